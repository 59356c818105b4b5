#!/usr/bin/env bash
# Starts a grandchild (`sleep infinity`, ignoring SIGINT/SIGTERM) in this worker's process group,
# writes its pid to $TRAP_OUT.ready, and exits on SIGINT/SIGTERM leaving the grandchild behind
# unless the supervisor kills the whole group.
out="${TRAP_OUT:?TRAP_OUT must name the output file}"
( trap '' INT TERM; exec sleep infinity ) &
grandchild=$!
trap 'exit 0' INT TERM
echo "$grandchild" > "$out.ready.tmp"
mv "$out.ready.tmp" "$out.ready"
while true; do
  sleep 60 &
  wait $!
done
