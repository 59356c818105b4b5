#!/usr/bin/env python3
"""Reports which interpreter runs it to $REPORT_DIR/<pid>.txt, then waits forever."""
import os
import signal
import sys

directory = os.environ["REPORT_DIR"]
tmp = os.path.join(directory, f".{os.getpid()}.tmp")
with open(tmp, "w") as f:
    f.write(f"executable={sys.executable}\n")
os.rename(tmp, os.path.join(directory, f"{os.getpid()}.txt"))
while True:
    signal.pause()
