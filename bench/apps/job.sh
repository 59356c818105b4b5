#!/bin/bash
# A scheduled job for the jobs scenario: appends "<nominal fire time> <its own start, s.us>" to $BENCH_JOB_LOG and
# exits 0. herdsman gives the nominal time (HERDSMAN_SCHEDULED_AT, RFC 3339 UTC); PM2 none ("-"). EPOCHREALTIME is
# bash's clock (no fork); one printf is one write (O_APPEND), so concurrent runs do not interleave.
printf '%s %s\n' "${HERDSMAN_SCHEDULED_AT:--}" "$EPOCHREALTIME" >>"$BENCH_JOB_LOG"
