#!/bin/sh
# Reports which shell runs it to $REPORT_DIR/<pid>.txt, then waits forever.
# Valid for bash and for dash: under bash BASH_VERSION is set, under /bin/sh (dash) it is not.
echo "bash=${BASH_VERSION:-none}" > "$REPORT_DIR/.$$.tmp"
mv "$REPORT_DIR/.$$.tmp" "$REPORT_DIR/$$.txt"
while true; do
  sleep 60
done
