#!/usr/bin/env python3
"""The no-supervisor baseline of herdsman's benchmark: the same workers, sharing one inherited socket.

    launcher.py --listen 127.0.0.1:PORT -i N [--preload FILE] [--respawn] -- node app.js
    launcher.py -i N -- node idle.js                       (no socket: N plain processes)

With --listen it binds the socket itself, then forks N children; each gets the socket as fd 3 with
LISTEN_FDS=1, LISTEN_PID=<its own pid>, PORT=<port> and NODE_OPTIONS=--require <preload> (herdsman's own
src/daemon/node/listen.cjs), so the same unmodified app serves from the shared socket, as under herdsman. Each
child also gets the write end of a pipe as fd 4 (HERDSMAN_READY_FD=4) on which the preload reports that its
server is listening ('L', or 'R' for process.send('ready')): the launcher uses it for readiness, as herdsman does.

Nothing sits in the data path: the launcher only waits. It prints one line per event on stdout:
`ready PID` (a child is listening), `unready PID` (a replacement did not report ready within 5 s: the reload
went on without it), `spawned PID`, `exited PID STATUS`, `reloaded`, `restarted`.
Signals: SIGHUP = rolling reload (for each child in turn: start a replacement, wait until it listens, then SIGINT
the old one); SIGUSR2 = restart (for each child in turn: SIGINT, wait for it to exit, start a new one);
SIGINT/SIGTERM = stop every child (SIGINT, SIGKILL after 1.6 s) and exit. With --respawn a child that exits
unexpectedly is replaced at once. The bench runs the launcher in its own process group and kills the group at the
end. Python 3.11 stdlib only.
"""
import argparse
import os
import selectors
import signal
import socket
import sys
import time

KILL_TIMEOUT = 1.6


def say(*words):
    sys.stdout.write(" ".join(str(w) for w in words) + "\n")
    sys.stdout.flush()


READY_TIMEOUT = 5.0


class Child:
    def __init__(self, slot, pid, ipc):
        self.slot, self.pid, self.ipc = slot, pid, ipc  # ipc: the read end of the child's readiness pipe
        self.ready, self.retiring = ipc is None, False


class Launcher:
    def __init__(self, args):
        self.args = args
        self.command = args.command
        self.sock = None
        self.port = None
        if args.listen:
            host, _, port = args.listen.rpartition(":")
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host or "127.0.0.1", int(port)))
            self.sock.listen(4096)
            self.port = self.sock.getsockname()[1]
        self.children = {}  # pid -> Child
        self.slots = [None] * args.instances  # slot -> pid
        self.sel = selectors.DefaultSelector()
        self.sigr, sigw = os.pipe()
        os.set_blocking(self.sigr, False)
        os.set_blocking(sigw, False)
        signal.set_wakeup_fd(sigw)
        for sig in (signal.SIGCHLD, signal.SIGHUP, signal.SIGUSR2, signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: None)
        self.sel.register(self.sigr, selectors.EVENT_READ, None)
        self.pending = []  # signals not handled yet
        self.stopping = False
        self.devnull = os.open(os.devnull, os.O_RDWR)

    # -- children -----------------------------------------------------------------------------------------------
    def spawn(self, slot):
        ready_r = ready_w = None
        if self.sock is not None:
            ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            try:
                keep = []
                if self.sock is not None:
                    s = os.dup(self.sock.fileno())
                    c = os.dup(ready_w)
                    os.dup2(s, 3)
                    os.dup2(c, 4)
                    keep = [3, 4]
                os.dup2(self.devnull, 0)
                os.dup2(self.devnull, 1)
                if not self.args.keep_stderr:
                    os.dup2(self.devnull, 2)
                os.closerange(max(keep, default=2) + 1, 65536)
                env = dict(os.environ)
                env["NODE_APP_INSTANCE"] = str(slot)
                if self.sock is not None:
                    env.update(
                        LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="app", PORT=str(self.port),
                        HERDSMAN_READY_FD="4",
                    )
                    if self.args.preload:
                        option = f'--require "{self.args.preload}"'
                        env["NODE_OPTIONS"] = (env.get("NODE_OPTIONS", "") + " " + option).strip()
                os.execvpe(self.command[0], self.command, env)
            finally:
                os._exit(127)
        ipc = None
        if ready_r is not None:
            os.close(ready_w)
            os.set_blocking(ready_r, False)
            ipc = ready_r
        child = Child(slot, pid, ipc)
        self.children[pid] = child
        self.slots[slot] = pid
        if ipc is not None:
            self.sel.register(ipc, selectors.EVENT_READ, child)
        say("spawned", pid)
        if child.ready:
            say("ready", pid)
        return child

    def drop(self, child):
        if child.ipc is not None:
            try:
                self.sel.unregister(child.ipc)
            except (KeyError, ValueError):
                pass
            os.close(child.ipc)
            child.ipc = None

    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                continue
            self.drop(child)
            say("exited", pid, status)
            if self.slots[child.slot] == pid:
                self.slots[child.slot] = None
                if self.args.respawn and not child.retiring and not self.stopping:
                    self.spawn(child.slot)

    def on_ipc(self, child):
        try:
            data = os.read(child.ipc, 512)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.drop(child)
            return
        if (b"L" in data or b"R" in data) and not child.ready:
            child.ready = True
            say("ready", child.pid)

    # -- the loop -----------------------------------------------------------------------------------------------
    def step(self, timeout):
        for key, _ in self.sel.select(timeout):
            if key.data is None:
                try:
                    for b in os.read(self.sigr, 512):
                        self.pending.append(b)
                except BlockingIOError:
                    pass
            else:
                self.on_ipc(key.data)
        self.reap()

    def wait_for(self, predicate, timeout):
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.step(min(left, 0.05))
        return True

    def stop_child(self, pid, sig=signal.SIGINT):
        child = self.children.get(pid)
        if child is None:
            return
        child.retiring = True
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if not self.wait_for(lambda: pid not in self.children, KILL_TIMEOUT):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.wait_for(lambda: pid not in self.children, 5)

    def reload(self):
        for slot in range(len(self.slots)):
            old = self.slots[slot]
            new = self.spawn(slot)
            if not self.wait_for(lambda: new.ready or new.pid not in self.children, READY_TIMEOUT):
                say("unready", new.pid)
            if old is not None:
                self.stop_child(old)
        say("reloaded")

    def restart(self):
        for slot in range(len(self.slots)):
            old = self.slots[slot]
            if old is not None:
                self.stop_child(old)
            self.spawn(slot)
        say("restarted")

    def run(self):
        if self.port is not None:
            say("listening", self.port)
        for slot in range(len(self.slots)):
            self.spawn(slot)
        while True:
            self.step(1.0)
            while self.pending:
                sig = self.pending.pop(0)
                if sig in (signal.SIGINT, signal.SIGTERM):
                    self.stopping = True
                    for pid in list(self.children):
                        self.children[pid].retiring = True
                        try:
                            os.kill(pid, signal.SIGINT)
                        except ProcessLookupError:
                            pass
                    self.wait_for(lambda: not self.children, KILL_TIMEOUT)
                    for pid in list(self.children):
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    self.wait_for(lambda: not self.children, 5)
                    return 0
                if sig == signal.SIGHUP:
                    self.reload()
                elif sig == signal.SIGUSR2:
                    self.restart()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", help="HOST:PORT to bind (port 0: any free port)")
    ap.add_argument("-i", "--instances", type=int, default=1)
    ap.add_argument("--preload", help="file for NODE_OPTIONS=--require (herdsman's listen.cjs)")
    ap.add_argument("--respawn", action="store_true", help="replace a child that exits unexpectedly, at once")
    ap.add_argument("--keep-stderr", action="store_true")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    if not args.command:
        ap.error("no command")
    return Launcher(args).run()


if __name__ == "__main__":
    sys.exit(main())
