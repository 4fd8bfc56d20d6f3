#!/usr/bin/env bash
# npm run gpu:check. `pack` (here, on the development machine) puts what the device machine lacks into
# .dev/: Node, the runtime node_modules, the commit, diffusers' source (for PyTorch's whole-model timings;
# the device has PyTorch but not diffusers). `run` (there) unpacks them and runs bench/gpu-check against
# the addon built here (CUDA for sm_80..sm_90a), with cuBLASLt and cuDNN from PyTorch's nvidia-* wheels.
#   device call: bash scripts/gpu-check.sh run   (carry: .dev, build/Release, dist; about 32 MiB)
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-run}" in
  pack)
    mkdir -p .dev
    [ -f .dev/node.xz ] || xz -T2 -c "$(command -v node)" > .dev/node.xz
    tar -cJf .dev/modules.tar.xz node_modules/node-gyp-build node_modules/sharp node_modules/@img node_modules/detect-libc node_modules/semver
    git rev-parse --short HEAD > .dev/commit
    # diffusers v0.36.0 (the oldest that imports with huggingface_hub 1.x) from a git mirror of
    # huggingface/diffusers (the fetch tool's), or PG25_DIFFUSERS_GIT.
    if [ ! -f .dev/diffusers.tar.xz ]; then
      git_dir="${PG25_DIFFUSERS_GIT:-/work/.mirror/huggingface+diffusers/repo}"
      if [ -d "$git_dir" ]; then git --git-dir="$git_dir" archive v0.36.0 src/diffusers | xz -T2 > .dev/diffusers.tar.xz
      else echo "no diffusers mirror at $git_dir (set PG25_DIFFUSERS_GIT): PyTorch's whole-model timings will be skipped" >&2; fi
    fi
    du -sh .dev build/Release dist ;;
  run)
    if [ -f .dev/node.xz ]; then mkdir -p /tmp/pg25-node && xz -dc .dev/node.xz > /tmp/pg25-node/node && chmod +x /tmp/pg25-node/node && export PATH=/tmp/pg25-node:$PATH; fi
    [ -d node_modules ] || tar -xJf .dev/modules.tar.xz
    export PG25_COMMIT="${PG25_COMMIT:-$(cat .dev/commit 2>/dev/null || echo unknown)}"
    site=$(python3 -c 'import site; print(site.getsitepackages()[0])' 2>/dev/null || true)
    export PG25_CUDA_LIBS="${PG25_CUDA_LIBS:-$(ls -d "$site"/nvidia/*/lib 2>/dev/null | tr '\n' ':')}"
    if [ -f .dev/diffusers.tar.xz ]; then mkdir -p /tmp/pg25-diffusers && tar -xJf .dev/diffusers.tar.xz -C /tmp/pg25-diffusers && export PG25_DIFFUSERS=/tmp/pg25-diffusers/src; fi
    node dist/bench/gpu-check.js ;;
  *) echo "usage: scripts/gpu-check.sh pack|run" >&2; exit 2 ;;
esac
