#!/usr/bin/env bash
# Records every HUP, USR1 and USR2 it gets as a line `<SIG>` in $SIG_DIR/<pid>.log and keeps
# running; $SIG_DIR/<pid>.ready appears once the traps are installed. Exits 0 on SIGINT/SIGTERM.
dir="${SIG_DIR:?SIG_DIR must name the output directory}"
log="$dir/$$.log"
child=""
for sig in HUP USR1 USR2; do
  trap "echo $sig >> '$log'" "$sig"
done
on_stop() {
  [ -n "$child" ] && kill "$child" 2>/dev/null
  exit 0
}
trap on_stop INT TERM
: > "$log"
echo "$$" > "$dir/.$$.ready.tmp"
mv "$dir/.$$.ready.tmp" "$dir/$$.ready"
while true; do
  sleep 1000 &
  child=$!
  wait "$child"
done
