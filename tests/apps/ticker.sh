#!/bin/sh
# Prints `tick <pid> <n>` on stdout every 0.1 s; exits 0 on SIGINT/SIGTERM.
trap 'exit 0' INT TERM
n=0
while :; do
  echo "tick $$ $n"
  n=$((n + 1))
  sleep 0.1
done
