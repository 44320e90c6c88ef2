#!/usr/bin/env bash
# `make test-asan`: the whole unit suite (ctest) under AddressSanitizer + UndefinedBehaviorSanitizer
# (LeakSanitizer is part of ASan on x86-64 Linux and is switched on explicitly below).
#
# phasemap's own code is instrumented; the pinned llama.cpp stays the normal Release build from
# scripts/deps.sh (its shared libraries are not instrumented, which ASan handles: their heap
# calls still go through ASan's malloc, so leaks and frees of our pointers are checked).
#
#   ASAN_BUILD   build directory (default build-asan)
#   JOBS         parallel compile/test jobs (default 2)
#   ASAN_CC/ASAN_CXX  compilers (default gcc/g++; clang/clang++ work too)
set -euo pipefail
cd "$(dirname "$0")/.."
BDIR=${ASAN_BUILD:-build-asan}
JOBS=${JOBS:-2}
CC_=${ASAN_CC:-gcc}
CXX_=${ASAN_CXX:-g++}

mkdir -p "$BDIR"
if [ ! -s "$BDIR/deps.env" ] || [ scripts/deps.sh -nt "$BDIR/deps.env" ]; then
  bash scripts/deps.sh > "$BDIR/deps.env.tmp" && mv "$BDIR/deps.env.tmp" "$BDIR/deps.env"
fi
# Every PHASEMAP_*=value line deps.sh prints becomes a CMake cache definition (as in the Makefile).
DEPS_DEFS=()
while IFS= read -r line; do
  case "$line" in PHASEMAP_*=*) DEPS_DEFS+=("-D$line") ;; esac
done < "$BDIR/deps.env"

t0=$(date +%s)
# -O1: fast enough to keep the suite short, precise enough for the sanitizers' reports.
cmake -S . -B "$BDIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER="$CC_" -DCMAKE_CXX_COMPILER="$CXX_" \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
  -DPHASEMAP_SANITIZE=ON -DPHASEMAP_BUILD_BENCH=OFF \
  "${DEPS_DEFS[@]}" >/dev/null
cmake --build "$BDIR" -j "$JOBS"
t1=$(date +%s)

# Suppressions: none are needed today (tests/hardening/asan.supp documents the policy and is
# empty of rules); a rule goes there only with a comment saying why it is not our bug.
SUPP="$PWD/tests/hardening/lsan.supp"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$SUPP:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
(cd "$BDIR" && ctest --output-on-failure -j "$JOBS" ${CTEST_ARGS:-})
t2=$(date +%s)
echo "test-asan: build $((t1 - t0)) s, tests $((t2 - t1)) s" >&2
