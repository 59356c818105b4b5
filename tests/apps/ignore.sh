#!/usr/bin/env bash
# Ignores SIGINT and SIGTERM (and so does its sleep): only SIGKILL stops it.
# $TRAP_OUT.ready appears once the signals are ignored.
out="${TRAP_OUT:?TRAP_OUT must name the output file}"
trap '' INT TERM
echo "$$" > "$out.ready"
while true; do
  sleep 60
done
