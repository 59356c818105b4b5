#!/usr/bin/env bash
# A worker that starts a helper in a session of its own (as Node's `detached: true` does), which inherits the
# app's socket (fd 3). The helper's pid goes to $DETACH_OUT. Runs until stopped.
out="${DETACH_OUT:?DETACH_OUT must name the output file}"
setsid sleep 1000 &
echo "$!" > "$out.tmp" && mv "$out.tmp" "$out"
while :; do
  sleep 0.2
done
