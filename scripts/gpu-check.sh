#!/usr/bin/env bash
# npm run gpu:check: the GPU check, in the steps of BENCHMARKS.md's GPU-time plan.
#   pack     (here, on the development machine) puts into .dev/ what the device machine lacks: Node, the
#            production dependency set, the reference data the checks read (tiny-pg25, the full-size configs,
#            the golden files used), diffusers' source (PyTorch's whole-model timings) and the commit; then
#            checks that what a device call carries fits (scripts/device-view.sh check).
#   carry    prints the ignored paths a device call must carry, one a line.
#   run N    (there) unpacks them, assuming nothing beyond bash, coreutils and python3, and runs phase N (1 or 2)
#            of bench/gpu-check against the carried addon, cuBLASLt and cuDNN from PyTorch's nvidia-* wheels;
#            the whole output is also written to $OUT/gpu-check-phaseN.log.
# PG25_GPU_CHECK_ADDON names the addon folder to carry (default build/Release; the rehearsal carries the
# emulation's, build-emu/Release).
set -euo pipefail
cd "$(dirname "$0")/.."
ADDON="${PG25_GPU_CHECK_ADDON:-build/Release}"

# Python's lzma and tarfile stand in for xz and tar, which a device image may lack.
unxz_to () { python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; }
untar () {
  mkdir -p "$2"
  python3 -c '
import sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    t.extractall(sys.argv[2], **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))' "$1" "$2"
}

case "${1:-run}" in
  carry) printf '%s\n' .dev "$ADDON" dist ;;
  pack)
    mkdir -p .dev
    node_version=$(node --version)
    if [ ! -f .dev/node.xz ] || [ "$(cat .dev/node.version 2>/dev/null)" != "$node_version" ]; then
      xz -T2 -c "$(command -v node)" > .dev/node.xz
      echo "$node_version" > .dev/node.version
    fi
    # Every package the production install holds, nested ones included (not the dev tools).
    npm ls --omit=dev --parseable --all 2>/dev/null | tail -n +2 | sed "s|^$PWD/||" | sort -u | awk 'NR == 1 || index($0, top "/") != 1 { print; top = $0 }' > .dev/modules.txt || true
    tar -cJf .dev/modules.tar.xz -T .dev/modules.txt
    ref="${PG25_REFERENCE:-../shared/reference}"
    [ -d "$ref/tiny-pg25" ] || { echo "gpu-check pack: no reference data at $ref (set PG25_REFERENCE)" >&2; exit 1; }
    # tokenizer and tokenizer_2 side by side: their identical files compress as one.
    tar -cJf .dev/reference.tar.xz -C "$ref" tiny-pg25/tokenizer tiny-pg25/tokenizer_2 tiny-pg25/model_index.json tiny-pg25/scheduler \
      tiny-pg25/text_encoder tiny-pg25/text_encoder_2 tiny-pg25/unet tiny-pg25/vae full golden/cases.json golden/text_encoders.safetensors \
      golden/unet.safetensors golden/vae.safetensors golden/pipeline_dpm.safetensors golden/pipeline_dpm_negative.safetensors
    git rev-parse --short HEAD > .dev/commit
    # diffusers v0.36.0 (the oldest that imports with huggingface_hub 1.x) from a git mirror of
    # huggingface/diffusers (the fetch tool's), or PG25_DIFFUSERS_GIT.
    if [ ! -f .dev/diffusers.tar.xz ]; then
      git_dir="${PG25_DIFFUSERS_GIT:-/work/.mirror/huggingface+diffusers/repo}"
      if [ -d "$git_dir" ]; then git --git-dir="$git_dir" archive v0.36.0 src/diffusers | xz -T2 > .dev/diffusers.tar.xz
      else echo "gpu-check pack: no diffusers mirror at $git_dir (set PG25_DIFFUSERS_GIT): PyTorch's whole-model timings will be skipped" >&2; fi
    fi
    bash scripts/device-view.sh check ;;
  run)
    phase="${2:-1}"
    commit=$(cat .dev/commit 2>/dev/null || echo unknown)
    export PG25_COMMIT="${PG25_COMMIT:-$commit}"
    # Unpacked once per machine and commit: the second phase's call on a warm machine finds them.
    tmp="${PG25_GPU_CHECK_TMP:-/tmp/pg25-gpu-check-$commit}"
    mkdir -p "$tmp"
    if [ -f .dev/node.xz ]; then
      [ -x "$tmp/bin/node" ] || { mkdir -p "$tmp/bin"; unxz_to .dev/node.xz "$tmp/bin/node.part"; chmod +x "$tmp/bin/node.part"; mv "$tmp/bin/node.part" "$tmp/bin/node"; }
      export PATH="$tmp/bin:$PATH"
    fi
    command -v node > /dev/null || { echo "gpu-check run: no node: run scripts/gpu-check.sh pack first and carry .dev" >&2; exit 1; }
    if [ ! -d node_modules ]; then
      [ -f .dev/modules.tar.xz ] || { echo "gpu-check run: no node_modules and no .dev/modules.tar.xz: run pack and carry .dev" >&2; exit 1; }
      untar .dev/modules.tar.xz .
    fi
    if [ -z "${PG25_REFERENCE:-}" ] && [ ! -d ../shared/reference ]; then
      [ -f .dev/reference.tar.xz ] || { echo "gpu-check run: no reference data (PG25_REFERENCE, ../shared/reference or .dev/reference.tar.xz)" >&2; exit 1; }
      [ -d "$tmp/reference/golden" ] || untar .dev/reference.tar.xz "$tmp/reference"
      export PG25_REFERENCE="$tmp/reference"
    fi
    site=$(python3 -c 'import site; print(site.getsitepackages()[0])' 2>/dev/null || true)
    export PG25_CUDA_LIBS="${PG25_CUDA_LIBS:-$(ls -d "$site"/nvidia/*/lib 2>/dev/null | tr '\n' ':')}"
    if [ -z "${PG25_DIFFUSERS:-}" ] && [ -f .dev/diffusers.tar.xz ]; then
      [ -d "$tmp/diffusers/src" ] || untar .dev/diffusers.tar.xz "$tmp/diffusers"
      export PG25_DIFFUSERS="$tmp/diffusers/src"
    fi
    out="${OUT:-$tmp}"
    mkdir -p "$out"
    set +e
    node dist/bench/gpu-check.js "$phase" 2>&1 | tee "$out/gpu-check-phase$phase.log"
    exit "${PIPESTATUS[0]}" ;;
  *) echo "usage: scripts/gpu-check.sh pack | carry | run 1|2" >&2; exit 2 ;;
esac
