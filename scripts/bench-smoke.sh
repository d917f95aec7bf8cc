#!/usr/bin/env bash
# CI smoke run of the benchmark runner: tiny workloads, one run, one-second windows.
# It checks that the pipeline works (mosquitto, modbus-sim, modbus-mapper, subscriber,
# /proc sampling, JSON results, plots); it is never a pass/fail timing test.
#   scripts/bench-smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p modbus-mapper -p modbus-sim -p benchmarks
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$target/release/bench" --smoke --bin-dir "$target/release" --out "$out"
for f in summary.json p1-properties.svg p3-delta-latency.svg p4-rtu.svg; do
  [ -s "$out/$f" ] || { echo "bench smoke: $f was not written" >&2; exit 1; }
done
echo "bench smoke test passed"
