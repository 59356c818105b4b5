#!/bin/sh
# A scheduled job for the tests: records its run (run id, attempt, pid) in $JOB_FILE, then sleeps
# $JOB_SLEEP seconds and exits with $JOB_EXIT; with $JOB_FAIL_UNTIL=N, the runs recorded before the Nth fail.
echo "$HERDSMAN_RUN_ID $HERDSMAN_ATTEMPT $$ $HERDSMAN_SCHEDULED_AT" >> "$JOB_FILE"
echo "running $HERDSMAN_RUN_ID attempt $HERDSMAN_ATTEMPT"
if [ -n "$JOB_FAIL_UNTIL" ] && [ "$(grep -c . "$JOB_FILE")" -lt "$JOB_FAIL_UNTIL" ]; then
  echo "failing on purpose" >&2
  exit 1
fi
if [ -n "$JOB_SLEEP" ]; then sleep "$JOB_SLEEP"; fi
exit "${JOB_EXIT:-0}"
