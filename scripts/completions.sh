#!/usr/bin/env bash
# Regenerates the checked-in shell completions and man page from the command-line definitions.
# A test (checked_in_completions_and_man_page_are_current) fails when they are out of date.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
herdsman=target/debug/herdsman
"$herdsman" completions bash > completions/herdsman.bash
"$herdsman" completions zsh > completions/_herdsman
"$herdsman" completions fish > completions/herdsman.fish
"$herdsman" man > completions/herdsman.1
echo "completions/ regenerated"
