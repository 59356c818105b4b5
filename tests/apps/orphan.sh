#!/usr/bin/env bash
# Leaves an orphan in its process group: a subshell starts `sleep infinity` and exits at once, so the
# sleep is reparented (to the daemon, a subreaper). Writes the orphan's pid to $ORPHAN_OUT, then waits.
out="${ORPHAN_OUT:?ORPHAN_OUT must name the output file}"
( sleep infinity & echo $! > "$out.tmp" )
mv "$out.tmp" "$out"
trap 'exit 0' INT TERM
while true; do
  sleep 60 &
  wait $!
done
