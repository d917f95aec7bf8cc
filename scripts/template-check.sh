#!/usr/bin/env bash
# CI: generates a mapper from templates/mapper/ into a temporary directory (with
# scripts/new-mapper.sh), checks it has exactly four TODOs, and builds and tests it with
# the workspace's Cargo.lock and target directory, so that nothing is rebuilt that the
# workspace build already built.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
"$root/scripts/new-mapper.sh" --sdk "$root/mapper-sdk" check-mapper "$tmp/check-mapper"
todos=$(grep -r TODO "$tmp/check-mapper" | wc -l)
if [ "$todos" -ne 4 ]; then
  echo "the skeleton has $todos TODOs, want exactly 4:" >&2; grep -rn TODO "$tmp/check-mapper" >&2; exit 1
fi
(cd "$tmp/check-mapper" && cargo fmt --check)
cp "$root/Cargo.lock" "$tmp/check-mapper/Cargo.lock"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
cargo test --manifest-path "$tmp/check-mapper/Cargo.toml"
version=$("$CARGO_TARGET_DIR/debug/check-mapper" --version)
[ "$version" = "check-mapper 0.1.0" ] || { echo "--version says: $version" >&2; exit 1; }
echo "template-check: generated, built and tested in $(( $(date +%s) - start )) s"
