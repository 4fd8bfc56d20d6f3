#!/usr/bin/env bash
# npm run test:asan: the addon built with AddressSanitizer and UndefinedBehaviorSanitizer, twice: the
# CPU build, and the CUDA emulation build (so an out-of-bounds index in a CUDA kernel is caught on the
# CPU); then the test files that exercise native code, run against each. Any sanitizer report fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
# Fresh build folders: a sanitized object must never link beside a stale one.
rm -rf build-asan build-asan-emu
node node_modules/cmake-js/bin/cmake-js compile --out build-asan --CDPG25_CUDA=OFF --CDPG25_SANITIZE=ON --CDCMAKE_BUILD_TYPE=RelWithDebInfo
node node_modules/cmake-js/bin/cmake-js compile --out build-asan-emu --CDPG25_CUDA_EMULATION=ON --CDPG25_SANITIZE=ON --CDCMAKE_BUILD_TYPE=RelWithDebInfo
# The addon must really be instrumented (cmake-js once dropped CMAKE_CXX_FLAGS silently).
for lib in build-asan/Release/pg25.node build-asan-emu/Release/pg25.node; do
  nm -D "$lib" | grep " __asan_" > /dev/null || { echo "$lib is not built with AddressSanitizer" >&2; exit 1; }
done
npx tsc -p tsconfig.json
asan="$(gcc -print-file-name=libasan.so)"
ubsan="$(gcc -print-file-name=libubsan.so)"
# Node itself is not built with ASan: preload the runtime, and leave leak checking to the leak tests
# (node's own allocations at exit would drown real reports).
export LD_PRELOAD="$asan:$ubsan"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_odr_violation=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export PG25_ADDON="$PWD/build-asan/Release/pg25.node"
files=(test/native/safetensors.test.ts test/pipeline/stages.test.ts test/pipeline/pipeline.test.ts test/pipeline/model-dir.test.ts test/pipeline/single-file.test.ts test/pipeline/features.test.ts test/native/mutations.test.ts test/pipeline/cancel.test.ts test/native/hostile-input.test.ts test/pipeline/lora.test.ts test/pipeline/inpaint.test.ts)
npx ava --serial --timeout=10m "${files[@]}"
# The emulation: its own checks (run directly, sanitized), then the CUDA backend's tests on it.
LD_PRELOAD= build-asan-emu/Release/pg25_emu_selftest
LD_PRELOAD= build-asan-emu/Release/pg25_emu_cudnn_selftest
export PG25_ADDON="$PWD/build-asan-emu/Release/pg25.node"
npx ava --serial --timeout=20m test/emulation/cuda-emulation-ops.test.ts test/emulation/cuda-emulation-defects.test.ts test/emulation/cuda-emulation-stages.test.ts \
  test/emulation/cuda-emulation-graphs.test.ts test/emulation/cuda-emulation-devices.test.ts test/emulation/cuda-emulation-conv.test.ts test/emulation/cuda-emulation-layout.test.ts test/emulation/cuda-emulation-guidance.test.ts test/native/profile.test.ts test/emulation/lora-emulation.test.ts \
  test/emulation/inpaint-emulation.test.ts test/emulation/attention-projections.test.ts
