#!/bin/sh
# Builds every fuzz target and runs each for N seconds (default 30), one after the other.
# Usage: fuzz/run-all.sh [SECONDS] [TARGET...]   (needs nightly and cargo-fuzz)
# Exits non-zero if a target finds a crash; the input is under fuzz/artifacts/TARGET/.
set -eu
cd "$(dirname "$0")"
secs="${1:-30}"
[ $# -gt 0 ] && shift
targets="$*"
[ -n "$targets" ] || targets="$(cargo +nightly fuzz list)"
cargo +nightly fuzz build
failed=""
for t in $targets; do
    echo "=== $t: ${secs} s"
    if ! cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -print_final_stats=1; then
        failed="$failed $t"
    fi
done
if [ -n "$failed" ]; then
    echo "FAILED:$failed"
    exit 1
fi
echo "all targets ran ${secs} s without a crash:" $targets
