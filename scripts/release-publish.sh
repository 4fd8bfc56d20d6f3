#!/usr/bin/env bash
# The release's last step: npm publish of the per-platform packages in release/ (scripts/release-build.sh),
# then of @pg25/native with both as optionalDependencies at its own version. Without NODE_AUTH_TOKEN (CI
# here) every publish is a dry run.
set -euo pipefail
cd "$(dirname "$0")/.."
dry=(); [ -n "${NODE_AUTH_TOKEN:-}" ] || { dry=(--dry-run); echo "release-publish: no NODE_AUTH_TOKEN: dry run"; }
version=$(node -p "require('./package.json').version")
for target in linux-x64 win32-x64; do
  tarball=release/pg25-native-$target-$version.tgz
  [ -f "$tarball" ] || { echo "release-publish: $tarball is missing" >&2; exit 1; }
  npm publish "$tarball" --access public "${dry[@]}"
done
# The main package, staged with its optional dependencies (not in the repository's package.json: npm ci
# would look them up before they are published).
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$stage"
npx tsc -p tsconfig.json && cp -r dist "$stage/"
node -e "
const f = process.argv[1], p = JSON.parse(require('fs').readFileSync(f, 'utf8'))
p.optionalDependencies = { '@pg25/native-linux-x64': p.version, '@pg25/native-win32-x64': p.version }
require('fs').writeFileSync(f, JSON.stringify(p, null, 2) + '\n')" "$stage/package.json"
ln -s "$PWD/node_modules" "$stage/node_modules"
(cd "$stage" && npm publish --access public --ignore-scripts "${dry[@]}")
