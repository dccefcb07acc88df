#!/usr/bin/env bash
# fuzz.sh -- builds the libFuzzer harnesses of tests/fuzz and runs each for a
# bounded time (tests/fuzz/README.md).
#
#   scripts/fuzz.sh [seconds] [target...]     default: 60 s, every target
#
# Environment:
#   FUZZ_BUILD  build and work directory (default build-fuzz)
#   FUZZ_JOBS   targets fuzzed at the same time (default: number of CPUs)
#   FUZZ_FRESH=1  start from the committed corpus only (drop what earlier
#               runs added to the work corpus): the bounded run of make test
#   FUZZ_ONLY_BUILD=1  build the harnesses, run nothing
#
# Each target fuzzes its work corpus FUZZ_BUILD/corpus/<target> (new inputs
# go there) seeded from the committed tests/fuzz/corpus/<target> and
# tests/fuzz/regressions/<target>, which are only read: libFuzzer writes new
# inputs to the first corpus directory it is given, the work one. Crashes,
# leaks, timeouts and OOMs are saved under FUZZ_BUILD/artifacts/<target>/.
# Prints one line per target (execs, exec/s, crashed or not) and exits
# non-zero when any target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:-60}
shift || true
ALL_TARGETS=(decimal json_member json_request engine_ops mgr_apply stream_reply redis_url stream_entry)
if [ $# -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi
OUT=${FUZZ_BUILD:-build-fuzz}
JOBS=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
CC=${CC_FUZZ:-clang}

case "$SECS" in '' | *[!0-9]*) echo "fuzz: seconds must be a number, not '$SECS'" >&2; exit 2 ;; esac
for t in "${TARGETS[@]}"; do
  [ -f "tests/fuzz/fuzz_$t.c" ] || { echo "fuzz: no target '$t' (tests/fuzz/fuzz_$t.c)" >&2; exit 2; }
done

bash scripts/fuzz-deps.sh

# ---- build ------------------------------------------------------------------
# The project's sources the harnesses need (no server, no database at run
# time), instrumented for coverage and sanitizers, in one archive: each
# harness pulls in only the objects it references. catalog.c references
# DuckDB functions that are never called here; libduckdb is linked for them.
LIB_SRCS=(
  src/common/alloc.c src/common/errors.c src/common/buf.c src/common/decimal.c src/common/idset.c src/common/rowset.c
  src/common/jsonw.c src/common/log.c src/common/hash.c src/common/wire.c
  src/engine/changes.c src/engine/engine.c src/engine/journal.c src/engine/lr.c
  src/engine/table.c
  src/stream/redis_url.c src/stream/redis_xstream.c src/stream/entry_mac.c src/common/hmac.c
  src/catalog/catalog.c src/store/dgsql.c
)
DUCKDB=third_party/duckdb
CFLAGS=(-std=gnu11 -g -O1 -D_GNU_SOURCE -DDG_VERSION='"fuzz"' -DDG_ENGINE_CHECK
        -fno-omit-frame-pointer -fno-sanitize-recover=all
        -Wall -Wextra -Wno-unused-parameter
        -Iinclude -Isrc -I"$DUCKDB/include")
LIBS=(-Wl,--as-needed -ljansson -lhiredis -lcrypto -L"$DUCKDB/lib" -Wl,-rpath,"$PWD/$DUCKDB/lib" -lduckdb -lpthread -lm)

rm -rf "$OUT/obj"
mkdir -p "$OUT/obj"
echo "fuzz: building ${#LIB_SRCS[@]} project sources and ${#TARGETS[@]} harnesses with $("$CC" --version | head -n1)" >&2
build_obj() {
  local src=$1 obj
  obj="$OUT/obj/$(echo "${src%.c}" | tr / _).o"
  "$CC" "${CFLAGS[@]}" -fsanitize=fuzzer-no-link,address,undefined -c "$src" -o "$obj"
}
pids=()
fail=0
for src in "${LIB_SRCS[@]}"; do
  build_obj "$src" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$JOBS" ]; then wait "${pids[0]}" || fail=1; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p" || fail=1; done
[ $fail = 0 ] || { echo "fuzz: building the project sources failed" >&2; exit 1; }
rm -f "$OUT/libdgfuzz.a"
ar rcs "$OUT/libdgfuzz.a" "$OUT"/obj/*.o

pids=()
for t in "${TARGETS[@]}"; do
  "$CC" "${CFLAGS[@]}" -fsanitize=fuzzer,address,undefined "tests/fuzz/fuzz_$t.c" \
    "$OUT/libdgfuzz.a" "${LIBS[@]}" -o "$OUT/fuzz_$t" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$JOBS" ]; then wait "${pids[0]}" || fail=1; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p" || fail=1; done
[ $fail = 0 ] || { echo "fuzz: building the harnesses failed" >&2; exit 1; }
[ "${FUZZ_ONLY_BUILD:-0}" = 1 ] && exit 0

# ---- run --------------------------------------------------------------------
# Longest input per target: the URL parser must see inputs over its 4096-byte
# cap; the decimal parser's cap is 256.
max_len() {
  case $1 in
    decimal) echo 320 ;;
    redis_url) echo 4200 ;;
    *) echo 8192 ;;
  esac
}

# Dictionaries of tokens (tests/fuzz/corpus/*.dict).
dict_of() {
  case $1 in
    json_member | json_request | mgr_apply) echo tests/fuzz/corpus/json.dict ;;
    stream_reply | redis_url) echo "tests/fuzz/corpus/$1.dict" ;;
    stream_entry) echo tests/fuzz/corpus/json.dict ;;
  esac
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

run_target() {
  local t=$1 work="$OUT/corpus/$1" art="$OUT/artifacts/$1/" log="$OUT/logs/$1.log"
  mkdir -p "$work" "$art" "$OUT/logs"
  local dirs=("$work" "tests/fuzz/corpus/$t")
  [ -d "tests/fuzz/regressions/$t" ] && dirs+=("tests/fuzz/regressions/$t")
  local opts=(-max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$t")"
              -print_final_stats=1 -artifact_prefix="$art")
  local dict
  dict=$(dict_of "$t")
  [ -n "$dict" ] && opts+=(-dict="$dict")
  [ "${FUZZ_FRESH:-0}" = 1 ] && rm -rf "$work" && mkdir -p "$work"
  local rc=0
  "$OUT/fuzz_$t" "${opts[@]}" "${dirs[@]}" >"$log" 2>&1 || rc=$?
  echo "$rc" >"$OUT/logs/$t.rc"
}

echo "fuzz: running ${#TARGETS[@]} targets for ${SECS}s each, $JOBS at a time (logs in $OUT/logs)" >&2
pids=()
for t in "${TARGETS[@]}"; do
  rm -f "$OUT/logs/$t.rc"
  run_target "$t" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$JOBS" ]; then wait "${pids[0]}" || true; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p" || true; done

crashed=0
printf '%-14s %12s %10s %8s  %s\n' target execs exec/s corpus result
for t in "${TARGETS[@]}"; do
  log="$OUT/logs/$t.log"
  rc=$(cat "$OUT/logs/$t.rc" 2>/dev/null || echo 99)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
  corp=$(find "$OUT/corpus/$t" -type f | wc -l)
  if [ "$rc" = 0 ]; then
    result=ok
  else
    crashed=1
    what=$(grep -a -m1 -oE 'ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|libFuzzer): [^ ]+( [^ ]+)?|runtime error: .*|duckgrid: assertion failed.*|fuzz: invariant .*' "$log" || true)
    art=$(grep -a -m1 -oE 'Test unit written to .*' "$log" | sed 's/^Test unit written to //' || true)
    # A known regression input: name it.
    for f in tests/fuzz/regressions/"$t"/*; do
      [ -n "$art" ] && [ -f "$f" ] && cmp -s "$f" "$art" && art="$f (regression)" && break
    done
    result="CRASHED (exit $rc) ${what:-see $log}${art:+ -- input $art}"
  fi
  printf '%-14s %12s %10s %8s  %s\n' "$t" "${execs:-?}" "${speed:-?}" "$corp" "$result"
done
if [ $crashed != 0 ]; then
  echo "fuzz: a target crashed; reproduce with $OUT/fuzz_<target> <input>, logs in $OUT/logs" >&2
  exit 1
fi
