"""A worker that speaks systemd's watchdog protocol itself: READY=1, then WATCHDOG=1 at half of
WATCHDOG_USEC. The first process of a slot (no marker file yet) stops sending after BEATS heartbeats and
stays alive, silent: hung. The processes after it keep beating. BEATS=0: never sends any."""
import os
import socket
import sys
import time


def notify(message):
    address = os.environ["NOTIFY_SOCKET"]
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message.encode(), address)


period = int(os.environ["WATCHDOG_USEC"]) / 1_000_000
assert os.environ.get("WATCHDOG_PID") == str(os.getpid()), "WATCHDOG_PID is not this process"
beats = int(os.environ.get("BEATS", "8"))
marker = os.environ.get("MARKER")
first = marker is not None and not os.path.exists(marker)
if first:
    open(marker, "w").close()
print(f"heartbeat pid={os.getpid()} first={first}", flush=True)
if beats > 0:
    notify("READY=1")
sent = 0
while True:
    if beats > 0 and (not first or sent < beats):
        notify("WATCHDOG=1")
        sent += 1
        if first and sent == beats:
            print(f"silent from now pid={os.getpid()}", flush=True)
    time.sleep(period / 4)
