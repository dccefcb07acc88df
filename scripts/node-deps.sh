#!/usr/bin/env bash
# node-deps.sh -- the pinned Node.js tools, from the npm registry:
#
#   swagger-ui-dist   the assets duckgrid serves at /docs (copied, a fixed
#                     whitelist, into third_party/swagger-ui/)
#   newman            runs postman/duckgrid.postman_collection.json
#   @redocly/cli      lints docs/openapi.json
#   esbuild           builds the web grid (scripts/web-build.sh)
#   puppeteer-core    drives Debian's chromium in the browser tests (tests/web/)
#
# Exact versions and integrity hashes come from tools/package.json and
# tools/package-lock.json (the lock records no download addresses:
# tools/.npmrc). `npm ci` installs them into third_party/node (ignored by
# git) without running any package's install scripts. Idempotent and quiet
# when everything is present: a stamp holds the lock file's checksum.
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_DIR=third_party/node
UI_DIR=third_party/swagger-ui
# The only files of swagger-ui-dist duckgrid serves (src/http/docs.c).
UI_FILES=(swagger-ui.css swagger-ui-bundle.js swagger-ui-standalone-preset.js favicon-32x32.png)

say() { echo "node-deps: $*" >&2; }

want=$(cat tools/package.json tools/package-lock.json | sha256sum | cut -d' ' -f1)

have_all() {
  [ "$(cat "$NODE_DIR/.stamp" 2>/dev/null)" = "$want" ] || return 1
  for bin in newman redocly esbuild; do [ -x "$NODE_DIR/node_modules/.bin/$bin" ] || return 1; done
  [ -f "$NODE_DIR/node_modules/puppeteer-core/package.json" ] || return 1
  for f in "${UI_FILES[@]}"; do [ -s "$UI_DIR/$f" ] || return 1; done
  [ "$(cat "$UI_DIR/.stamp" 2>/dev/null)" = "$want" ]
}

have_all && exit 0

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    say "$tool is missing (scripts/deps.sh installs it)"
    exit 1
  fi
done
# @redocly/cli 1.34 runs on Node.js >= 18.17 (Debian 12 ships 18.20).
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number);
              process.exit(a > 18 || (a === 18 && b >= 17) ? 0 : 1)'; then
  say "Node.js $(node --version) is too old: @redocly/cli needs 18.17 or later"
  exit 1
fi

# One installer at a time (test runs in parallel may all call this); the
# second one finds the work done.
mkdir -p third_party
exec 9>third_party/.node-deps.lock
flock 9
have_all && exit 0

say "installing swagger-ui-dist, newman, @redocly/cli, esbuild and puppeteer-core (pinned) into $NODE_DIR"
mkdir -p "$NODE_DIR"
cp tools/package.json tools/package-lock.json tools/.npmrc "$NODE_DIR/"
rm -f "$NODE_DIR/.stamp"
(cd "$NODE_DIR" &&
  npm ci --ignore-scripts --no-audit --no-fund --no-update-notifier --loglevel=error >/dev/null)
echo "$want" >"$NODE_DIR/.stamp"

src="$NODE_DIR/node_modules/swagger-ui-dist"
tmp="$UI_DIR.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
for f in "${UI_FILES[@]}"; do cp "$src/$f" "$tmp/$f"; done
sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$src/package.json" | head -1 >"$tmp/VERSION"
echo "$want" >"$tmp/.stamp"
rm -rf "$UI_DIR"
mv "$tmp" "$UI_DIR"
say "done: swagger-ui-dist $(cat "$UI_DIR/VERSION") in $UI_DIR"
