#!/usr/bin/env bash
# fuzz-deps.sh -- what scripts/fuzz.sh needs on top of scripts/deps.sh: clang
# with its libFuzzer, ASan and UBSan runtimes (Debian 12: the `clang` package,
# clang 14, and libclang-rt-14-dev with libclang_rt.fuzzer and the sanitizer
# runtimes -- clang only recommends that one, and we install without
# recommends, so it is named).
#
# Idempotent and quiet when everything is present. The project's own
# libraries and headers (jansson, hiredis, DuckDB) come from scripts/deps.sh,
# which is run first when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "fuzz-deps: $*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else say "need root (or sudo) to run: $*"; exit 1
  fi
}

# The project's dependencies (headers the harnesses compile against).
if [ ! -f /usr/include/jansson.h ] || [ ! -f /usr/include/hiredis/read.h ] ||
   [ ! -f third_party/duckdb/include/duckdb.h ]; then
  bash scripts/deps.sh
fi

CC=${CC_FUZZ:-clang}

# A compiler that links -fsanitize=fuzzer,address,undefined.
can_fuzz() {
  command -v "$CC" >/dev/null 2>&1 || return 1
  local tmp rc
  tmp=$(mktemp -d)
  printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
    'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
    >"$tmp/t.c"
  rc=0
  "$CC" -fsanitize=fuzzer,address,undefined "$tmp/t.c" -o "$tmp/t" >/dev/null 2>&1 || rc=1
  rm -rf "$tmp"
  return $rc
}

if ! can_fuzz; then
  say "installing clang and libclang-rt-14-dev (libFuzzer, ASan, UBSan)"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev >/dev/null
  if ! can_fuzz; then
    say "$CC cannot link -fsanitize=fuzzer,address,undefined even after installing clang"
    exit 1
  fi
fi
