#!/usr/bin/env bash
# bench.sh -- `make bench`: builds a Release tree of its own (build-bench/),
# then runs bench/run.py (engine compute figures, then the end-to-end
# scenarios against a private redis-server and duckgrid on free loopback
# ports). Prints RESULT lines; writes bench/results/latest.json and the plot.
#
#   make bench                       every scenario (~10 minutes on 2 cores)
#   BENCH=sync,async make bench      only some (ceiling comes along for ratios)
#   BENCH=profile make bench         perf profile of server + Redis under sync load
#   BENCH_QUICK=1 make bench         shorter runs, smaller tables (smoke test)
#   bash scripts/bench.sh --only spread --quick     the same, as arguments
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BENCH_BUILD:-build-bench}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "bench: need root (or sudo) to run: $*" >&2; return 1
  fi
}

# gnuplot-nox draws the plot; only the bench needs it, so it is installed here
# (not in scripts/deps.sh). redis-benchmark comes with redis-tools (deps.sh).
if ! command -v gnuplot >/dev/null 2>&1; then
  echo "bench: installing gnuplot-nox" >&2
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null
fi
command -v redis-benchmark >/dev/null 2>&1 || { echo "bench: redis-benchmark missing (run make deps)" >&2; exit 1; }

if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
make --no-print-directory -C "$BUILD" -j"$(nproc 2>/dev/null || echo 2)" duckgrid bench_load bench_mkdb bench_engine bench_duckdb >/dev/null

exec /usr/bin/python3 bench/run.py --build "$BUILD" "$@"
