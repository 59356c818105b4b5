#!/usr/bin/env bash
# Leaves an orphan at start: `sh -c 'sleep $ORPHAN_SECONDS &'` (default 1.5) returns at once and
# its `sleep` is re-parented to the nearest reaper (the namespace's init under `unshare --pid`),
# which must reap it when it exits. Then prints `orphan left pid=<pid>` on stdout and
# `stderr line pid=<pid>` on stderr, and waits; exits 0 on SIGINT/SIGTERM.
sh -c "sleep ${ORPHAN_SECONDS:-1.5} &"
echo "orphan left pid=$$"
echo "stderr line pid=$$" >&2
child=""
on_stop() {
  [ -n "$child" ] && kill "$child" 2>/dev/null
  exit 0
}
trap on_stop INT TERM
while true; do
  sleep 1000 &
  child=$!
  wait "$child"
done
