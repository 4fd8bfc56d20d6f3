#!/usr/bin/env bash
# npm run fuzz: libFuzzer with AddressSanitizer and UndefinedBehaviorSanitizer over the safetensors
# header parser and the config readers, then randomized (not coverage-guided) runs over the TypeScript
# tokenizer, the prompt parsers and chunkers, LoRA files (PEFT metadata, ranks, values) and Hub answers
# (a random Hub on 127.0.0.1). FUZZ_SECONDS per target (default 180). Needs clang with its fuzzer runtime
# (Debian: apt-get install clang libclang-rt-14-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${FUZZ_SECONDS:-180}"
cc="${CLANGXX:-clang++}"
command -v "$cc" >/dev/null || { echo "fuzz: $cc not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
out=fuzz-out
mkdir -p "$out"
flags=(-std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Inative)
common=(native/core/json.cc native/core/config.cc native/io/safetensors.cc native/backend/tensor.cc native/models/params.cc native/cpu/threadpool.cc)
models=(native/io/weights.cc native/models/blocks.cc native/models/clip.cc native/models/unet.cc native/models/vae.cc)

"$cc" "${flags[@]}" native/fuzz/fuzz_safetensors.cc "${common[@]}" native/io/weights.cc -o "$out/fuzz_safetensors"
"$cc" "${flags[@]}" native/fuzz/fuzz_config.cc "${common[@]}" "${models[@]}" -o "$out/fuzz_config"

# Seed corpora: the reference headers and configs, when present, plus small hand-made inputs.
ref="${PG25_REFERENCE:-../shared/reference}"
mkdir -p "$out/corpus_safetensors" "$out/corpus_config"
node -e '
const fs = require("fs"), path = require("path")
const [ref, dir] = process.argv.slice(1)
const mk = h => { const j = Buffer.from(JSON.stringify(h)); const l = Buffer.alloc(8); l.writeBigUInt64LE(BigInt(j.length)); return Buffer.concat([l, j, Buffer.alloc(64)]) }
fs.writeFileSync(path.join(dir, "a"), mk({ a: { dtype: "F16", shape: [2, 3], data_offsets: [0, 12] }, __metadata__: { format: "pt" } }))
fs.writeFileSync(path.join(dir, "b"), mk({ x: { dtype: "BF16", shape: [4], data_offsets: [0, 8] }, y: { dtype: "I64", shape: [1], data_offsets: [8, 16] } }))
for (const f of ["golden/unet.safetensors", "golden/vae.safetensors"]) {
  try { const b = fs.readFileSync(path.join(ref, f)); const n = Number(b.readBigUInt64LE(0)); fs.writeFileSync(path.join(dir, path.basename(f)), b.subarray(0, Math.min(b.length, 8 + n + 256))) } catch {}
}' "$ref" "$out/corpus_safetensors"
for c in unet vae text_encoder_2; do
  [ -f "$ref/full/$c/config.json" ] && cp "$ref/full/$c/config.json" "$out/corpus_config/$c.json"
  [ -f "$ref/tiny-pg25/$c/config.json" ] && cp "$ref/tiny-pg25/$c/config.json" "$out/corpus_config/tiny-$c.json"
done
echo '{}' > "$out/corpus_config/empty.json"

status=0
for t in safetensors config; do
  echo "fuzz: $t for ${secs}s"
  if ! "$out/fuzz_$t" "$out/corpus_$t" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 2> "$out/fuzz_$t.log"; then
    status=1
    echo "fuzz: $t FOUND A CRASH (see $out/fuzz_$t.log and the crash-* file)" >&2
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$out/fuzz_$t.log" | sed "s/^/fuzz: $t /"
done
npx tsc -p tsconfig.json
for t in tokenizer prompts lora hub; do
  echo "fuzz: $t for ${secs}s"
  FUZZ_SECONDS="$secs" node "dist/bench/fuzz-$t.js" || status=1
done
exit $status
