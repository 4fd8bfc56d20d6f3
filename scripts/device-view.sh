#!/usr/bin/env bash
# What a device call sees of this checkout: the tracked files and the untracked ones git does not
# ignore (as the device tool sends them), plus the carried paths (scripts/gpu-check.sh carry); no
# node_modules, no ../shared. The device tool refuses more than 64 MiB or more than 8 carried paths.
#   check      the size and the count, failing past either limit (gpu-check.sh pack ends with it)
#   make DEST  that view copied into DEST (the device rehearsal runs gpu-check there)
set -euo pipefail
cd "$(dirname "$0")/.."
limit=$((64 << 20))
mapfile -t carried < <(bash scripts/gpu-check.sh carry)
for p in "${carried[@]}"; do [ -e "$p" ] || { echo "device view: carried path $p does not exist (run scripts/gpu-check.sh pack, build the addon)" >&2; exit 1; }; done
[ "${#carried[@]}" -le 8 ] || { echo "device view: ${#carried[@]} carried paths, at most 8 travel" >&2; exit 1; }
tree_bytes=$(git ls-files -co --exclude-standard -z | xargs -0 -r stat -c %s 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
carry_bytes=$(find "${carried[@]}" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
total=$((tree_bytes + carry_bytes))
echo "device view: $((total >> 20)) MiB of 64 (tree $((tree_bytes >> 20)) MiB, carried ${carried[*]}: $((carry_bytes >> 20)) MiB)"
[ "$total" -le "$limit" ] || { echo "device view: $total bytes is over the device tool's 64 MiB" >&2; exit 1; }
case "${1:-check}" in
  check) ;;
  make)
    dest="$2"
    mkdir -p "$dest"
    git ls-files -co --exclude-standard -z | xargs -0 -r -I{} sh -c '[ -e "$1" ] && printf "%s\0" "$1"' _ {} | tar --null -T - -cf - | tar -xf - -C "$dest"
    tar -cf - "${carried[@]}" | tar -xf - -C "$dest" ;;
  *) echo "usage: scripts/device-view.sh check | make DEST" >&2; exit 2 ;;
esac
