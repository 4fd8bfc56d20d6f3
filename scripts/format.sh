#!/usr/bin/env bash
# Formats the tracked C++/CUDA files under native/ in place with .clang-format (scripts/check-format.sh checks them).
set -euo pipefail
cd "$(dirname "$0")/.."
CLANG_FORMAT=${CLANG_FORMAT:-clang-format}
if ! command -v "$CLANG_FORMAT" >/dev/null 2>&1; then
  echo "format: $CLANG_FORMAT not found; install clang-format 14 (Debian/Ubuntu: apt-get install clang-format-14)" >&2
  exit 1
fi
# Two passes: clang-format 14 settles a kernel launch through PG25_LAUNCH(...)(args) only on the second.
for _ in 1 2; do
  git ls-files -z 'native/*.cc' 'native/*.cu' 'native/*.h' | xargs -0 "$CLANG_FORMAT" --style=file -i
done
