#!/usr/bin/env bash
# Fails if any tracked C++/CUDA file under native/ differs from .clang-format's layout (scripts/format.sh fixes it).
set -euo pipefail
cd "$(dirname "$0")/.."
CLANG_FORMAT=${CLANG_FORMAT:-clang-format}
if ! command -v "$CLANG_FORMAT" >/dev/null 2>&1; then
  echo "check-format: $CLANG_FORMAT not found; install clang-format 14 (Debian/Ubuntu: apt-get install clang-format-14)" >&2
  exit 1
fi
git ls-files -z 'native/*.cc' 'native/*.cu' 'native/*.h' | xargs -0 "$CLANG_FORMAT" --style=file --dry-run --Werror
echo "check-format: native/ matches .clang-format"
