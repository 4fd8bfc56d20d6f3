#!/usr/bin/env bash
# The release's last step: packs @pg25/native into $RELEASE_DIR (default release/) with the per-platform
# packages that scripts/release-build.sh left there as optionalDependencies at its own version, then npm
# publish of the platform packages and of it. Without NODE_AUTH_TOKEN (CI here) every publish is a dry run.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mkdir -p "${RELEASE_DIR:-release}" && cd "${RELEASE_DIR:-release}" && pwd)
dry=(); [ -n "${NODE_AUTH_TOKEN:-}" ] || { dry=(--dry-run); echo "release-publish: no NODE_AUTH_TOKEN: dry run"; }
version=$(node -p "require('./package.json').version")
for target in linux-x64 win32-x64; do
  [ -f "$out/pg25-native-$target-$version.tgz" ] || { echo "release-publish: $out/pg25-native-$target-$version.tgz is missing" >&2; exit 1; }
done
[ -d node_modules ] || npm ci --ignore-scripts
# The main package is staged with its optional dependencies: they are not in the repository's package.json,
# where npm ci would look them up before they are published. No prebuilds/: the platform packages carry them.
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$stage"
npx tsc -p tsconfig.json && cp -r dist "$stage/"
node -e "
const f = process.argv[1], p = JSON.parse(require('fs').readFileSync(f, 'utf8'))
p.optionalDependencies = { '@pg25/native-linux-x64': p.version, '@pg25/native-win32-x64': p.version }
require('fs').writeFileSync(f, JSON.stringify(p, null, 2) + '\n')" "$stage/package.json"
ln -s "$PWD/node_modules" "$stage/node_modules"
(cd "$stage" && npm pack --ignore-scripts --silent --pack-destination "$out" >/dev/null)
for tarball in "$out/pg25-native-linux-x64-$version.tgz" "$out/pg25-native-win32-x64-$version.tgz" "$out/pg25-native-$version.tgz"; do
  npm publish "$tarball" --access public "${dry[@]}"
done
