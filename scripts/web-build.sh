#!/usr/bin/env bash
# web-build.sh -- builds the web grid (web/) into web/dist (ignored by git)
# with the pinned esbuild of tools/package-lock.json (scripts/node-deps.sh):
#
#   web/index.html          -> web/dist/index.html   (served at /)
#   web/src/main.js + deps  -> web/dist/app.js       (one minified bundle)
#   web/src/app.css         -> web/dist/app.css
#
# duckgrid reads these files once at start (src/http/docs.c). Quick and
# quiet; rebuilds only when a source is newer than the output.
set -euo pipefail
cd "$(dirname "$0")/.."

ESBUILD=third_party/node/node_modules/.bin/esbuild
OUT=web/dist
[ -x "$ESBUILD" ] || bash scripts/node-deps.sh

newest_src=$(find web/index.html web/src -type f -newer "$OUT/.stamp" 2>/dev/null | head -1 || true)
if [ -f "$OUT/.stamp" ] && [ -z "$newest_src" ] && [ "$ESBUILD" -ot "$OUT/.stamp" ]; then
  exit 0
fi
mkdir -p "$OUT"
"$ESBUILD" web/src/main.js --bundle --minify --format=iife --target=es2020 \
  --log-level=warning --outfile="$OUT/app.js"
"$ESBUILD" web/src/app.css --bundle --minify --log-level=warning --outfile="$OUT/app.css"
cp web/index.html "$OUT/index.html"
touch "$OUT/.stamp"
echo "web-build: web grid built in $OUT" >&2
