# duckgrid -- the two commands that matter: `make run` and `make test`.
# Both install what is missing first (scripts/deps.sh), so they work on a
# fresh Debian 12 machine with only git and make.

BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_TSAN ?= build-tsan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all deps build asan tsan web run test unit-test api-test bench fuzz clean

all: build

deps:
	@bash scripts/deps.sh

$(BUILD)/Makefile: CMakeLists.txt | deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null

build: deps $(BUILD)/Makefile web
	@$(MAKE) --no-print-directory -C $(BUILD) -j$(JOBS)

# The web grid (web/ -> web/dist, pinned esbuild), served at / by duckgrid.
web: deps
	@bash scripts/web-build.sh

# Optimised (NDEBUG): a Debug engine verifies the whole table after every
# operation, which makes a 100,000-row insert quadratic; the unit tests run
# that check explicitly instead.
$(BUILD_ASAN)/Makefile: CMakeLists.txt | deps
	@cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDG_ASAN=ON $(CMAKE_FLAGS) >/dev/null

asan: deps $(BUILD_ASAN)/Makefile web
	@$(MAKE) --no-print-directory -C $(BUILD_ASAN) -j$(JOBS)

# ThreadSanitizer build (DG_TSAN; gcc's libtsan): the server and the unit
# tests, for the concurrency pass of make test.
$(BUILD_TSAN)/Makefile: CMakeLists.txt | deps
	@cmake -S . -B $(BUILD_TSAN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDG_TSAN=ON $(CMAKE_FLAGS) >/dev/null

tsan: deps $(BUILD_TSAN)/Makefile web
	@$(MAKE) --no-print-directory -C $(BUILD_TSAN) -j$(JOBS)

# Starts a private redis-server (loopback, password, AOF under data/) and
# duckgrid with the demo data; Ctrl-C stops both.
run: build
	@bash scripts/run.sh

# Every test: unit tests (release, ASan+UBSan and TSan builds), then the API
# and property tests against a real redis-server and duckgrid (README: "What
# make test runs").
test: build asan tsan
	@BUILD=$(BUILD) BUILD_ASAN=$(BUILD_ASAN) BUILD_TSAN=$(BUILD_TSAN) bash scripts/test.sh

unit-test: build
	@cd $(BUILD) && ctest --output-on-failure

bench: build
	@bash scripts/bench.sh

# Long fuzzing runs (10 min per target); new inputs stay in build-fuzz/corpus.
fuzz: deps
	@bash scripts/fuzz.sh 600

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_TSAN) build-fuzz .pytest_cache web/dist
