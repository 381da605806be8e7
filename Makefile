# Front door: wraps CMake so a fresh machine needs two commands
# (`make demo`, `make test`).
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=
SOURCES     = $(shell git ls-files '*.c' '*.h' 2>/dev/null)

.PHONY: all build deps test test-unit asan asan-integration fuzz demo bench format format-check docs clean

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_ARGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# Everything: unit, config-doc freshness, and integration tests against a
# real Kafka broker that the ctest fixture fetches and starts.
test: deps
	$(MAKE) build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-unit: build
	cd $(BUILD) && ctest --output-on-failure -L unit -j $(JOBS)

# Unit tests under AddressSanitizer + UndefinedBehaviorSanitizer.
asan:
	cmake -S . -B $(ASAN_BUILD) -DLD_SANITIZE=address,undefined \
	      -DCMAKE_BUILD_TYPE=Debug $(CMAKE_ARGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -L unit -j $(JOBS)

# The daemon's integration tests under the sanitizers too: learnd itself
# runs instrumented against the real broker, and ASan's other timing finds
# what the optimized run does not (0004 found a resume skip point that could
# fall below what was released). The deployer's Python test is left out: it
# only adds a venv.
asan-integration: asan
	cd $(ASAN_BUILD) && ctest --output-on-failure -L integration -E 0010 \
	    -j $(JOBS)

# Every libFuzzer target for FUZZ_SECONDS (default 60) each, on a clang build
# with the libraries instrumented (coverage, ASan, UBSan) in $(FUZZ_BUILD);
# fails on any crash. The gcc build replays the corpora in `make test`.
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
fuzz:
	@scripts/install-deps.sh --fuzz
	FUZZ_BUILD=$(abspath $(FUZZ_BUILD)) FUZZ_SECONDS=$(FUZZ_SECONDS) \
	    CMAKE_ARGS="$(CMAKE_ARGS)" tests/fuzz/run.sh

demo: deps
	$(MAKE) build
	$(BUILD)/daemon/learnd demo

bench: build
	cmake --build $(BUILD) --target bench -j $(JOBS)

docs: build
	$(BUILD)/daemon/learnd config doc > docs/CONFIGURATION.md

format:
	clang-format -i $(SOURCES)

# Formatting, and the size limits of files and functions (issue 16).
format-check:
	clang-format --dry-run --Werror $(SOURCES)
	scripts/check-sizes.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
