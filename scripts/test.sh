#!/usr/bin/env bash
# test.sh -- run by `make test`: unit tests in the release and the ASan+UBSan
# builds, then the pytest suites (API tests against a real redis-server and
# duckgrid; the engine's property test), with the ASan build of the server
# for one pass of the API tests and the TSan build for the concurrent ones.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3   # Debian's python3 has pytest and requests
BUILD=${BUILD:-build}
BUILD_ASAN=${BUILD_ASAN:-build-asan}
BUILD_TSAN=${BUILD_TSAN:-build-tsan}
# ThreadSanitizer: keep going after a report (halt_on_error=0) so one run shows
# them all; a report still fails the run: the process exits 66 (ctest fails
# the unit test) and tests/api/conftest.py fails the test during which the
# server printed it. tests/tsan.supp explains each suppression.
TSAN_OPTS="halt_on_error=0:exitcode=66:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp"
# The API tests that exercise concurrency, run against the TSan server: long
# polls on the ring (woken by writes), SSE and WebSocket fan-out, sync
# writes of one request_id from 8 threads, key deletion while the key is in
# use, the seed's two concurrent clients, readers of the manager's memory on
# the loops and workers while a writer runs, writes queued from the loops
# to the submitter's thread. (test_write_path's
# test_long_poll_wakes_up_on_a_write is left out: it asserts a wake-up within
# 1 s, which TSan's slowdown breaks; test_updates_ring covers the same path.)
TSAN_API_TESTS=(
  tests/api/test_updates_ring.py
  tests/api/test_events.py
  tests/api/test_ws.py
  tests/api/test_ws_limits.py
  tests/api/test_revocation.py
  tests/api/test_front.py::test_pipelined_requests_answer_in_order
  tests/api/test_front.py::test_clients_that_vanish_mid_long_poll_cost_nothing
  tests/api/test_front.py::test_a_slow_sse_reader_is_dropped_not_buffered
  tests/api/test_write_path.py::test_same_request_id_concurrently_applies_once
  tests/api/test_security.py::test_deleted_key_refused_while_in_concurrent_use
  tests/api/test_seed.py::test_2_concurrent_clients_applied_once_in_stream_order
  tests/api/test_followers.py::test_followers_serve_reads_and_writes
  tests/api/test_manager.py::test_follower_takes_over_after_a_crash
  tests/api/test_revert_compact.py::test_compact_revert_from_the_audit_log_is_the_same
  tests/api/test_row_memory.py::test_concurrent_reads_while_writing
  tests/api/test_write_loop.py
)

echo "== unit tests (release build)"
(cd "$BUILD" && ctest --output-on-failure --timeout 300)

echo "== unit tests (ASan + UBSan build)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
(cd "$BUILD_ASAN" && ctest --output-on-failure --timeout 600)

echo "== unit tests (TSan build)"
(cd "$BUILD_TSAN" && TSAN_OPTIONS=$TSAN_OPTS ctest --output-on-failure --timeout 600)

echo "== fuzzing (libFuzzer, 10 s per target, from the committed corpus; make fuzz runs 10 min each)"
FUZZ_FRESH=1 bash scripts/fuzz.sh 10

echo "== API and property tests (release build)"
DG_BUILD_DIR=$PWD/$BUILD $PY -m pytest -q -p no:cacheprovider tests/api tests/prop

echo "== browser tests (the web grid in headless chromium, puppeteer-core; ~30 s)"
DG_BUILD_DIR=$PWD/$BUILD $PY -m pytest -q -s -p no:cacheprovider tests/web

echo "== API and property tests (ASan + UBSan build of the server and the engine driver)"
DG_BUILD_DIR=$PWD/$BUILD_ASAN DG_SANITIZED=1 $PY -m pytest -q -p no:cacheprovider tests/api tests/prop

echo "== API tests of the concurrent paths (TSan build of the server)"
DG_BUILD_DIR=$PWD/$BUILD_TSAN DG_SANITIZED=1 TSAN_OPTIONS=$TSAN_OPTS \
  $PY -m pytest -q -p no:cacheprovider "${TSAN_API_TESTS[@]}"
