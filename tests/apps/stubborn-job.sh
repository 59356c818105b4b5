#!/bin/sh
# A job that ignores SIGINT and SIGTERM, as does the child it leaves in its process group (its pid goes
# to $JOB_CHILD): only SIGKILL of the group ends them.
trap '' INT TERM
sleep 60 &
echo $! > "$JOB_CHILD"
echo "started, ignoring INT and TERM"
wait
