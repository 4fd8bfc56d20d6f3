#!/usr/bin/env bash
# Fetches the reference files named in references.json, each at its recorded commit, into DIR
# (default /tmp/prompt-refs): DIR/a1111/modules/..., DIR/comfy/comfy/... (needs network access).
set -euo pipefail
dir=${1:-/tmp/prompt-refs}
here=$(cd "$(dirname "$0")" && pwd)
python3 - "$here/references.json" "$dir" <<'PY'
import json, os, sys, urllib.request
refs, out = json.load(open(sys.argv[1])), sys.argv[2]
for name, ref in refs.items():
    for f in ref["files"]:
        url = f"https://raw.githubusercontent.com/{ref['repo']}/{f['commit']}/{f['path']}"
        dest = os.path.join(out, name, f["path"])
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with urllib.request.urlopen(url) as r, open(dest, "wb") as w:
            w.write(r.read())
        print(dest)
PY
