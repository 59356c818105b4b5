#!/usr/bin/env bash
# Writes this worker's environment, cwd and open fds to $ENV_OUT_DIR/<pid>.{env,cwd,fds}
# (atomically: temp file + rename), then execs `sleep infinity` keeping the same pid and fds.
set -eu
dir="${ENV_OUT_DIR:?ENV_OUT_DIR must name the output directory}"
env > "$dir/.$$.env.tmp"
mv "$dir/.$$.env.tmp" "$dir/$$.env"
pwd > "$dir/.$$.cwd.tmp"
mv "$dir/.$$.cwd.tmp" "$dir/$$.cwd"
ls -l "/proc/$$/fd" > "$dir/.$$.fds.tmp" 2>&1 || true
mv "$dir/.$$.fds.tmp" "$dir/$$.fds"
exec sleep infinity
