#!/usr/bin/env bash
# Soak test (not part of scripts/test.sh): builds the release modbus-mapper and disturbs
# it for MINUTES (default 60) with random broker restarts, Modbus unit outages, profile
# edits and delta bursts, then checks that no desired value was lost, the mapper never
# crashed or panicked, and its RSS stayed flat. Extra arguments go to the soak binary
# (--devices N, --seed S).
#   scripts/soak.sh            # one hour
#   scripts/soak.sh 10         # ten minutes
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-60}"
shift || true
scripts/deps.sh
target=${CARGO_TARGET_DIR:-target}
# The mapper under test is the release build; the harness needs no optimisation.
cargo build --release -q -p modbus-mapper
cargo build -q -p soak
exec "$target/debug/soak" --minutes "$minutes" --mapper "$target/release/modbus-mapper" "$@"
