# phasemap — two entry points: `make demo` and `make test`. Each installs what is missing.
SHELL := /bin/bash
BUILD ?= build
JOBS  ?= $(shell nproc)
MODEL ?= $(firstword $(wildcard ../shared/models/stories260K.gguf) $(PHASEMAP_MODEL))
CMAKE_EXTRA ?=

.PHONY: all deps build demo test test-asan fuzz bench clean

all: build

$(BUILD)/deps.env: scripts/deps.sh
	@mkdir -p $(BUILD)
	bash scripts/deps.sh > $(BUILD)/deps.env.tmp && mv $(BUILD)/deps.env.tmp $(BUILD)/deps.env

deps:
	@mkdir -p $(BUILD)
	bash scripts/deps.sh > $(BUILD)/deps.env.tmp && mv $(BUILD)/deps.env.tmp $(BUILD)/deps.env

build: deps
	@source $(BUILD)/deps.env && \
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  -DPHASEMAP_LLAMA_SRC=$$PHASEMAP_LLAMA_SRC -DPHASEMAP_LLAMA_BUILD=$$PHASEMAP_LLAMA_BUILD -DPHASEMAP_DUCKDB_INCLUDE=$$PHASEMAP_DUCKDB_INCLUDE -DPHASEMAP_DUCKDB_LIB=$$PHASEMAP_DUCKDB_LIB -DPHASEMAP_REPORT_ASSETS=$$PHASEMAP_REPORT_ASSETS -DPHASEMAP_CCACHE_DIR=$$PHASEMAP_CCACHE_DIR $(CMAKE_EXTRA) >/dev/null && \
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	@bash scripts/demo.sh "$(BUILD)/phasemap" "$(MODEL)"

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

bench: build
	bash bench/run.sh $(BUILD)

# Sanitizer build (ASan + UBSan + LeakSanitizer) of the whole unit suite, in its own build dir.
test-asan: deps
	bash scripts/test-asan.sh

# libFuzzer targets for every parser the project owns (FUZZ_SECONDS each).
fuzz: deps
	DEPS_ENV=$(BUILD)/deps.env bash scripts/fuzz.sh

clean:
	rm -rf $(BUILD)
