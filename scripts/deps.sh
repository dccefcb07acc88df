#!/usr/bin/env bash
# deps.sh -- install everything duckgrid needs to build, run and test, pinned.
#
# Idempotent and quiet when everything is present. Debian packages come from
# apt (as root, or through sudo); DuckDB 1.4.4 LTS comes from the npm registry
# with `npm pack` into third_party/duckdb (ignored by git), checked by version
# and by checksum.
set -euo pipefail
cd "$(dirname "$0")/.."

DUCKDB_VERSION=1.4.4
DUCKDB_BINDINGS_PKG="@duckdb/node-bindings-linux-x64@1.4.4-r.4"
DUCKDB_HEADER_PKG="duckdb@1.4.4"
DUCKDB_BINDINGS_SHA256=732fac4dc6b8f198870b9c4bb6ddf13544466daca00ad28ba2f1d80de5d7aa4b
DUCKDB_HEADER_SHA256=5bb967dcbcd517670ba5f169f238fb9d6787e53752c60ebe24386169d76941ed
DEST=third_party/duckdb

# Debian packages (chromium and a font for the web grid's browser tests,
# tests/web/). "pkg:cmd" means the package is not needed when cmd is
# already on PATH (a machine may bring its own compiler, CMake or Node.js).
# Installed with --no-install-recommends, so every package a step needs is
# named here, even one another package merely recommends: on Debian 12
# libFuzzer and clang's sanitizer runtimes are in libclang-rt-14-dev, which
# clang only recommends. Checked on a minimal root (debootstrap
# --variant=minbase plus git and make) with `make test` and `make run`.
PKGS=(
  build-essential:gcc cmake:cmake pkg-config:pkg-config git:git npm:npm
  libh2o-evloop-dev libwslay-dev libjansson-dev libhiredis-dev libcmocka-dev libssl-dev libjwt-dev
  redis-server redis-tools python3:/usr/bin/python3 python3-pytest python3-requests
  python3-jwt python3-cryptography python3-websocket openssl clang:clang
  ca-certificates curl:curl
  libasan8 libubsan1 libtsan2         # gcc's ASan, UBSan and TSan runtimes (build-asan, build-tsan)
  libclang-rt-14-dev                  # libFuzzer and clang's sanitizer runtimes (scripts/fuzz.sh)
  chromium fonts-dejavu-core
)

say() { echo "deps: $*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else say "need root (or sudo) to run: $*"; exit 1
  fi
}

missing=()
for entry in "${PKGS[@]}"; do
  p=${entry%%:*}
  if [ "$p" != "$entry" ] && command -v "${entry#*:}" >/dev/null 2>&1; then continue; fi
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  case "$st" in *" installed") ;; *) missing+=("$p") ;; esac
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# libcurl's headers (outbound HTTP: webhook deliveries, duckgrid import and
# export). Any flavour will do; libcurl4-openssl-dev goes with the OpenSSL
# duckgrid already uses. The flavours conflict with each other, so one is
# installed only when pkg-config finds none.
if ! pkg-config --exists libcurl; then
  say "installing Debian packages: libcurl4-openssl-dev"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends libcurl4-openssl-dev >/dev/null
fi

have_duckdb() {
  [ -f "$DEST/include/duckdb.h" ] && [ -f "$DEST/lib/libduckdb.so" ] &&
    [ "$(cat "$DEST/VERSION" 2>/dev/null)" = "$DUCKDB_VERSION" ]
}

if ! have_duckdb; then
  say "fetching DuckDB $DUCKDB_VERSION with npm pack"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$DUCKDB_BINDINGS_PKG" "$DUCKDB_HEADER_PKG" >/dev/null)
  bind_tgz=$(ls "$tmp"/duckdb-node-bindings-linux-x64-*.tgz)
  head_tgz=$(ls "$tmp"/duckdb-[0-9]*.tgz)
  echo "$DUCKDB_BINDINGS_SHA256  $bind_tgz" | sha256sum -c --quiet -
  echo "$DUCKDB_HEADER_SHA256  $head_tgz" | sha256sum -c --quiet -
  tar -xzf "$bind_tgz" -C "$tmp" package/libduckdb.so package/package.json
  mv "$tmp/package" "$tmp/bindings"
  tar -xzf "$head_tgz" -C "$tmp" package/src/duckdb/src/include/duckdb.h package/package.json
  ver=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$tmp/package/package.json" | head -1)
  [ "$ver" = "$DUCKDB_VERSION" ] || { say "duckdb header package is $ver, want $DUCKDB_VERSION"; exit 1; }
  rm -rf "$DEST"
  mkdir -p "$DEST/include" "$DEST/lib"
  cp "$tmp/package/src/duckdb/src/include/duckdb.h" "$DEST/include/"
  cp "$tmp/bindings/libduckdb.so" "$DEST/lib/"
  echo "$DUCKDB_VERSION" >"$DEST/VERSION"
  say "DuckDB $DUCKDB_VERSION installed in $DEST"
fi

# Pinned Node.js tools (swagger-ui assets for /docs, newman, the OpenAPI linter).
bash scripts/node-deps.sh
