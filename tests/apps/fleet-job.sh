#!/bin/sh
# A fleet job for the tests: appends "start <run id> <host> <fence> <pid> <ns>" to $JOB_FILE, sleeps
# $JOB_SLEEP seconds, then appends "end <run id> <host> <fence> <pid> <ns>". Appends of one short line are
# atomic, so several hosts share the file.
echo "start $HERDSMAN_RUN_ID ${HERDSMAN_FLEET_HOST:--} ${HERDSMAN_FENCE:--} $$ $(date +%s%N)" >> "$JOB_FILE"
if [ -n "$JOB_SLEEP" ]; then sleep "$JOB_SLEEP"; fi
echo "end $HERDSMAN_RUN_ID ${HERDSMAN_FLEET_HOST:--} ${HERDSMAN_FENCE:--} $$ $(date +%s%N)" >> "$JOB_FILE"
