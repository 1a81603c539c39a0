#!/bin/sh
# Short, bounded fuzz runs for CI: builds the three targets (instrumented as `cargo fuzz build`
# does, on stable Rust) and runs each for FUZZ_SECS seconds (default 30) from a temporary copy
# of its committed corpus, so nothing new is written into the repository. Exits non-zero if any
# target crashes, leaks past the memory limit or hangs; the failing input is printed (hex) and
# kept in fuzz/artifacts/<target>/.
#
#   sh fuzz/run-short.sh                  # all targets, 30 s each
#   FUZZ_SECS=5 sh fuzz/run-short.sh relay_requests
set -eu
cd "$(dirname "$0")"

secs="${FUZZ_SECS:-30}"
targets="${*:-contract_events bridge_stdio relay_requests}"
host=$(rustc -vV | sed -n 's/^host: //p')
CARGO_TARGET_DIR="$(pwd)/target"
export CARGO_TARGET_DIR

# What cargo-fuzz passes with `--sanitizer none` (coverage counters, compare tracing, the
# `fuzzing` cfg, debug assertions). --target keeps these flags off build scripts and proc macros.
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions"
export RUSTFLAGS

start=$(date +%s)
nice -n 10 cargo build --quiet --locked --profile fuzz-ci --target "$host" --bins
echo "fuzz: built the targets in $(($(date +%s) - start)) s"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
passed=0
failed=0
for target in $targets; do
    mkdir -p "$work/$target/corpus" "$work/$target/artifacts"
    cp corpus/"$target"/* "$work/$target/corpus/"
    log="$work/$target/log"
    if nice -n 10 "${CARGO_TARGET_DIR:-target}/$host/fuzz-ci/$target" "$work/$target/corpus" \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
        -artifact_prefix="$work/$target/artifacts/" >"$log" 2>&1; then
        passed=$((passed + 1))
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        cov=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | sed -E 's/.*(cov: [0-9]+ ft: [0-9]+).*/\1/')
        echo "fuzz: $target ok: $runs runs in $secs s, $cov"
    else
        failed=$((failed + 1))
        echo "fuzz: $target FAILED; the end of its log:"
        tail -n 60 "$log"
        mkdir -p "artifacts/$target"
        for input in "$work/$target/artifacts"/*; do
            [ -f "$input" ] || continue
            cp "$input" "artifacts/$target/"
            echo "fuzz: failing input fuzz/artifacts/$target/$(basename "$input"), as hex:"
            od -An -tx1 -v "$input" | head -n 64
        done
    fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
