#!/usr/bin/env bash
# Appends `start <pid> <ns>` to $STAMP_FILE at start and `stop <pid> <ns>` when it gets SIGINT or
# SIGTERM, then exits 0; otherwise it sleeps. <ns>: `date +%s%N`. Fork mode, for reload ordering.
out="${STAMP_FILE:?STAMP_FILE must name the output file}"
child=""
on_stop() {
  echo "stop $$ $(date +%s%N)" >> "$out"
  [ -n "$child" ] && kill "$child" 2>/dev/null
  exit 0
}
trap on_stop INT TERM
echo "start $$ $(date +%s%N)" >> "$out"
while true; do
  sleep 1000 &
  child=$!
  wait "$child"
done
