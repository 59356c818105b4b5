#!/usr/bin/env bash
# Records the stop signal it receives (INT or TERM) to $TRAP_OUT, then exits 0.
# $TRAP_OUT.ready appears once the traps are installed.
out="${TRAP_OUT:?TRAP_OUT must name the output file}"
child=""
on_signal() {
  echo "$1" >> "$out"
  [ -n "$child" ] && kill "$child" 2>/dev/null
  exit 0
}
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
echo "$$" > "$out.ready"
while true; do
  sleep 60 &
  child=$!
  wait "$child"
done
