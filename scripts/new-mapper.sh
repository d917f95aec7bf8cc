#!/usr/bin/env bash
# A new protocol mapper from templates/mapper/, without cargo-generate:
#   scripts/new-mapper.sh [--sdk PATH] [--protocol NAME] NAME [DIR]
# NAME is the crate and binary name (e.g. foo-mapper); DIR defaults to ./NAME and must not
# exist or be empty. --sdk is the mapper-sdk the crate depends on by path (default: this
# repository's, absolute); --protocol the KubeEdge protocolName (default: NAME without a
# trailing -mapper). Inside this workspace, add DIR to the members of the root Cargo.toml.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
sdk="$root/mapper-sdk"
protocol=""
usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --sdk) [ $# -ge 2 ] || usage; sdk="$2"; shift 2 ;;
    --protocol) [ $# -ge 2 ] || usage; protocol="$2"; shift 2 ;;
    -h|--help) usage ;;
    --*) echo "unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] && [ $# -le 2 ] || usage
name="$1"
dir="${2:-$name}"
if ! [[ "$name" =~ ^[a-z][a-z0-9-]*$ ]]; then
  echo "NAME must be lowercase letters, digits and -, starting with a letter: $name" >&2; exit 2
fi
protocol="${protocol:-${name%-mapper}}"
if ! [[ "$protocol" =~ ^[a-z][a-z0-9-]*$ ]]; then
  echo "the protocol name must be lowercase letters, digits and -: $protocol" >&2; exit 2
fi
if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
  echo "$dir exists and is not empty" >&2; exit 1
fi
[ -f "$sdk/Cargo.toml" ] || { echo "no mapper-sdk at $sdk (pass --sdk PATH)" >&2; exit 1; }
crate="${name//-/_}"
# Escapes a value for the replacement side of a sed s|...|...| command.
esc() { printf '%s' "$1" | sed -e 's/[\\&|]/\\&/g'; }
mkdir -p "$dir"
(cd "$root/templates/mapper" && find . -type f ! -name cargo-generate.toml) | while read -r f; do
  mkdir -p "$dir/$(dirname "$f")"
  sed -e "s|{{project-name}}|$(esc "$name")|g" \
      -e "s|{{crate_name}}|$(esc "$crate")|g" \
      -e "s|{{protocol}}|$(esc "$protocol")|g" \
      -e "s|{{sdk_path}}|$(esc "$sdk")|g" \
      "$root/templates/mapper/$f" > "$dir/$f"
done
if grep -rq '{{' "$dir"; then
  echo "placeholders left in $dir:" >&2; grep -rn '{{' "$dir" >&2; exit 1
fi
echo "created $dir: crate $name, protocol $protocol, mapper-sdk at $sdk"
echo "next: cd $dir && cargo test; then fill in the four TODOs in src/lib.rs (docs/writing-a-mapper.md)"
