#!/usr/bin/env bash
# The test command: installs what is missing, then runs every test of the workspace
# (unit, property, end-to-end with a real mosquitto, simulators, interoperability).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
export PYMODBUS_PYTHON="$PWD/target/pytools/bin/python"
cargo test --workspace --all-features "$@"
