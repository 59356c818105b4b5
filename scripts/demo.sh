#!/usr/bin/env bash
# The demo: build herdsman, serve examples/hello.js from a cluster of one worker per core on localhost,
# show which workers answer, and list them. The cluster keeps running; `target/release/herdsman kill` ends it.
set -euo pipefail
cd "$(dirname "$0")/.."

port="${DEMO_PORT:-3000}"
cargo build --release --quiet
herdsman=target/release/herdsman

if "$herdsman" list --json | grep -q '"name":"hello"'; then
  "$herdsman" delete hello >/dev/null
fi
"$herdsman" start examples/hello.js --name hello -i max --listen "127.0.0.1:$port"

echo
echo "Six requests, each on a new connection; the kernel hands them to the workers directly:"
for _ in 1 2 3 4 5 6; do
  curl --silent --show-error --max-time 5 \
    --header 'Connection: close' "http://127.0.0.1:$port/"
done

echo
"$herdsman" list
echo
echo "Serving on http://127.0.0.1:$port/ . Try: $herdsman logs hello | $herdsman restart hello | $herdsman kill"
