#!/usr/bin/env bash
# npm run build:win: the Windows x64 addon cross-compiled from Linux with MinGW-w64 (Debian's
# g++-mingw-w64-x86-64-posix), the stand-in for the MSVC build of the release workflow. Writes
# build-win/Release/pg25.node (the CPU backend) and build-win-emu/Release/ (the CUDA emulation build and
# its self-test programs). Node's N-API symbols come from an import library made from node-api-headers'
# node_api.def; the C++ and thread runtimes are linked statically, so the binaries need no MinGW DLLs.
# Usage: scripts/build-win.sh [cpu|emu|all]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}
cxx=x86_64-w64-mingw32-g++-posix
command -v "$cxx" >/dev/null || { echo "build-win: $cxx not found (apt-get install g++-mingw-w64-x86-64-posix)" >&2; exit 1; }
headers=node_modules/node-api-headers
[ -f "$headers/def/node_api.def" ] || { echo "build-win: $headers is missing (npm ci)" >&2; exit 1; }

build () {  # build <folder> <extra cmake args...>
  local out=$1; shift
  mkdir -p "$out"
  x86_64-w64-mingw32-dlltool -d "$headers/def/node_api.def" -l "$out/node_api.a" -D node.exe
  cmake -S . -B "$out" -G "Unix Makefiles" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_SYSTEM_NAME=Windows -DCMAKE_SYSTEM_PROCESSOR=AMD64 \
    -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_RC_COMPILER=x86_64-w64-mingw32-windres \
    -DCMAKE_JS_INC="$PWD/$headers/include" -DCMAKE_JS_LIB="$PWD/$out/node_api.a" -DCMAKE_JS_SRC= \
    -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$PWD/$out/Release" -DCMAKE_RUNTIME_OUTPUT_DIRECTORY="$PWD/$out/Release" \
    -DPG25_CUDA=OFF "$@" >"$out/configure.log" || { cat "$out/configure.log"; exit 1; }
  cmake --build "$out" -j "${PG25_BUILD_JOBS:-2}"
  echo "build-win: $out/Release/pg25.node"
}

case $which in
  cpu) build build-win ;;
  emu) build build-win-emu -DPG25_CUDA_EMULATION=ON ;;
  all) build build-win; build build-win-emu -DPG25_CUDA_EMULATION=ON ;;
  *) echo "usage: scripts/build-win.sh [cpu|emu|all]" >&2; exit 2 ;;
esac
