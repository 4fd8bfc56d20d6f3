#!/usr/bin/env bash
# A release job's steps for one platform (.github/workflows/release.yml): build the addon with the CUDA
# backend, run the tests that need no GPU on it, pack @pg25/native-<target> into $RELEASE_DIR (default
# release/; a binary built with any CUDA but 12.8 is refused). Where the release toolchain is missing (CI on
# Linux: no CUDA 12.8, no MSVC) it rehearses: the Linux build of this checkout, or the MinGW build standing in
# for MSVC, packed without the CUDA check, so every step still runs (test/native/release.test.ts).
# Usage: scripts/release-build.sh <linux-x64|win32-x64>
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: scripts/release-build.sh <linux-x64|win32-x64>}
out=${RELEASE_DIR:-release}
mkdir -p "$out"
release=--release
nvcc_version () { "${CUDACXX:-nvcc}" --version | sed -n 's/.*release [0-9.]*, V\([0-9.]*\).*/\1/p'; }
case $target in
  linux-x64)
    if command -v "${CUDACXX:-nvcc}" >/dev/null && [[ "$(nvcc_version)" == 12.8.* ]]; then
      npm ci --ignore-scripts && npx tsc -p tsconfig.json
      node scripts/prebuild.js
      binary=build-prebuild/Release/pg25.node; cuda=$(nvcc_version)
    else
      echo "release-build: rehearsal (no CUDA 12.8 here): packing this checkout's build/Release"
      binary=build/Release/pg25.node; cuda=${PG25_REHEARSAL_CUDA:-12.8.0}; release=
    fi
    PG25_ADDON=$PWD/$binary npx ava test/pipeline/stages.test.ts test/unit/tokenizer.test.ts test/native/safetensors.test.ts
    ;;
  win32-x64)
    if command -v cl.exe >/dev/null; then
      npm ci --ignore-scripts && npx tsc -p tsconfig.json
      npx cmake-js compile --out build-release --CDPG25_CUDA=ON
      binary=build-release/Release/pg25.node; cuda=$(nvcc_version)
      PG25_ADDON=$(cygpath -w "$PWD/$binary") npx ava test/pipeline/stages.test.ts test/unit/tokenizer.test.ts test/native/safetensors.test.ts
    else
      echo "release-build: rehearsal (no MSVC here): the MinGW build stands in (its tests: scripts/wine-job.sh)"
      bash scripts/build-win.sh cpu
      binary=build-win/Release/pg25.node; cuda=${PG25_REHEARSAL_CUDA:-12.8.0}; release=
    fi
    ;;
  *) echo "release-build: unknown target $target" >&2; exit 2 ;;
esac
node scripts/pack-platform.js "$target" "$binary" --cuda "$cuda" $release --out "$out"
