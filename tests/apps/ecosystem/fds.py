#!/usr/bin/env python3
"""Reports the sockets herdsman passed (socket activation) to $FDS_OUT_DIR/<pid>.json, atomically
(temp file + rename): LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES and, for each fd from 3 on, its
/proc/self/fd link, SO_ACCEPTCONN (listening?) and the bound address. Then waits for SIGINT/SIGTERM."""
import json
import os
import signal
import socket

directory = os.environ["FDS_OUT_DIR"]
count = int(os.environ.get("LISTEN_FDS", "0"))
fds = []
for fd in range(3, 3 + count):
    entry = {"fd": fd, "link": os.readlink(f"/proc/self/fd/{fd}")}
    try:
        sock = socket.socket(fileno=fd)
        entry["listening"] = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        host, port = sock.getsockname()[:2]
        entry["host"], entry["port"] = host, port
        sock.detach()  # keep the fd open: herdsman's socket, not ours to close
    except OSError as e:
        entry["error"] = str(e)
    fds.append(entry)
report = {
    "pid": os.getpid(),
    "LISTEN_FDS": os.environ.get("LISTEN_FDS"),
    "LISTEN_PID": os.environ.get("LISTEN_PID"),
    "LISTEN_FDNAMES": os.environ.get("LISTEN_FDNAMES"),
    "fds": fds,
}
tmp = os.path.join(directory, f".{os.getpid()}.tmp")
with open(tmp, "w") as f:
    json.dump(report, f)
os.rename(tmp, os.path.join(directory, f"{os.getpid()}.json"))
for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, lambda *_: os._exit(0))
while True:
    signal.pause()
