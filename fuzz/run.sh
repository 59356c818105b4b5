#!/bin/sh
# Runs one fuzz target under AFL++ until it has made EXECS executions (or SECONDS have passed), at the lowest
# priority. Findings go to $FUZZ_OUT/<target> (default: fuzz/out/<target>); see README.md. With
# FUZZ_INSTANCE=NAME it runs as a further instance (AFL++'s -S NAME) beside one already fuzzing the target.
#
#   fuzz/run.sh TARGET [EXECS] [SECONDS]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
target=$1
execs=${2:-10000000}
seconds=${3:-86400}
out=${FUZZ_OUT:-$here/out}
bin=${CARGO_TARGET_DIR:-$here/target}/release/$target
afl_dicts=${AFL_DICTS:-$HOME/.local/share/afl.rs/AFLplusplus/dictionaries}
dicts=""
add() { [ -f "$1" ] && dicts="$dicts -x $1"; return 0; }
case $target in
    protocol|jobstore) add "$here/dict/protocol.dict"; add "$afl_dicts/json.dict" ;;
    keeper|dump|adoption) add "$here/dict/protocol.dict"; add "$here/dict/config.dict"; add "$afl_dicts/json.dict" ;;
    config) add "$here/dict/config.dict"; add "$afl_dicts/toml.dict" ;;
    import) add "$here/dict/import.dict"; add "$afl_dicts/json.dict" ;;
    log_line) add "$here/dict/log_line.dict"; add "$afl_dicts/json.dict" ;;
    dotenv) add "$here/dict/dotenv.dict" ;;
    cron) add "$here/dict/cron.dict" ;;
esac
mkdir -p "$out"
export AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 AFL_NO_UI=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
# shellcheck disable=SC2086
exec nice -n 19 cargo afl fuzz -i "$here/corpus/$target" -o "$out/$target" ${FUZZ_INSTANCE:+-S "$FUZZ_INSTANCE"} $dicts -t 2000 \
    -E "$execs" -V "$seconds" -- "$bin"
