#!/usr/bin/env bash
# A worker that takes its time to stop: instance 0 waits 5 s after SIGINT before it exits (the kill timeout
# usually ends it first), every other instance exits at once. Runs until told to stop.
on_int() {
  if [ "${HERDSMAN_INSTANCE:-}" = 0 ]; then
    sleep 5
  fi
  exit 0
}
trap on_int INT
while :; do
  sleep 0.1
done
