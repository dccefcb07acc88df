#!/usr/bin/env bash
# test.sh -- run by `make test`: unit tests in the release and the ASan+UBSan
# builds, then the pytest suites (API tests against a real redis-server and
# duckgrid; the engine's property test), with the ASan build of the server
# for one pass of the API tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3   # Debian's python3 has pytest and requests
BUILD=${BUILD:-build}
BUILD_ASAN=${BUILD_ASAN:-build-asan}

echo "== unit tests (release build)"
(cd "$BUILD" && ctest --output-on-failure --timeout 300)

echo "== unit tests (ASan + UBSan build)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
(cd "$BUILD_ASAN" && ctest --output-on-failure --timeout 600)

echo "== fuzzing (libFuzzer, 20 s per target, from the committed corpus)"
FUZZ_FRESH=1 bash scripts/fuzz.sh 20

echo "== API and property tests (release build)"
DG_BUILD_DIR=$PWD/$BUILD $PY -m pytest -q -p no:cacheprovider tests/api tests/prop

echo "== browser tests (the web grid in headless chromium, puppeteer-core; ~30 s)"
DG_BUILD_DIR=$PWD/$BUILD $PY -m pytest -q -s -p no:cacheprovider tests/web

echo "== API and property tests (ASan + UBSan build of the server and the engine driver)"
DG_BUILD_DIR=$PWD/$BUILD_ASAN DG_SANITIZED=1 $PY -m pytest -q -p no:cacheprovider tests/api tests/prop
