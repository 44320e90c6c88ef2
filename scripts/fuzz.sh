#!/usr/bin/env bash
# `make fuzz`: builds the libFuzzer targets (fuzz/CMakeLists.txt, clang, ASan + UBSan) in
# build-fuzz and runs each for FUZZ_SECONDS (default 60) from its seed corpus fuzz/corpus/<target>.
# New coverage-increasing inputs go to build-fuzz/corpus/<target> (not the repository); a crash
# leaves build-fuzz/artifacts/<target>/crash-* and makes the script fail after all targets ran.
#
#   FUZZ_SECONDS   seconds per target (default 60; CI runs a short pass with 20)
#   FUZZ_TARGETS   space-separated subset of: npy npz layers run_file manifest prompts hypotheses
#                  control_vector (default all built)
#   FUZZ_BUILD     build directory (default build-fuzz)
#   FUZZ_SEED      libFuzzer -seed (default: libFuzzer's own random seed; CI fixes it so a pass is repeatable)
#   JOBS           compile jobs (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${FUZZ_SECONDS:-60}
BDIR=${FUZZ_BUILD:-build-fuzz}
JOBS=${JOBS:-2}
TARGETS_ARG=${FUZZ_TARGETS:-}
SEED_ARG=()
[ -n "${FUZZ_SEED:-}" ] && SEED_ARG=(-seed="$FUZZ_SEED")
command -v clang++ >/dev/null || { echo "fuzz: clang++ not found (scripts/deps.sh installs clang)" >&2; exit 1; }

# The compiler cache deps.sh reports (make fuzz ran it into build/deps.env), if any, and the pinned
# llama.cpp source tree (ggml's gguf reader for the control_vector target; without it that target
# is not built).
CCACHE_DEF=$(sed -n 's/^PHASEMAP_CCACHE_DIR=/-DPHASEMAP_CCACHE_DIR=/p' "${DEPS_ENV:-build/deps.env}" 2>/dev/null || true)
LLAMA_DEF=$(sed -n 's/^PHASEMAP_LLAMA_SRC=/-DPHASEMAP_LLAMA_SRC=/p' "${DEPS_ENV:-build/deps.env}" 2>/dev/null || true)
cmake -S fuzz -B "$BDIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ $CCACHE_DEF $LLAMA_DEF >/dev/null
cmake --build "$BDIR" -j "$JOBS"
# Every target the build defined (fuzz/CMakeLists.txt adds manifest / hypotheses when they exist).
TARGETS=${TARGETS_ARG:-$(tr ';' ' ' < "$BDIR/targets.txt")}

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:symbolize=1"
# The NPZ harnesses write a scratch file per input: keep it in memory when /dev/shm is there.
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then export TMPDIR=/dev/shm; fi
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
failed=()
for t in $TARGETS; do
  seeds="fuzz/corpus/$t"
  [ -d "$seeds" ] || { echo "fuzz: no seed corpus $seeds" >&2; exit 1; }
  work="$BDIR/corpus/$t"; art="$BDIR/artifacts/$t"
  mkdir -p "$work" "$art"
  echo "fuzz: $t for ${SECS}s" >&2
  # First directory receives new inputs; the seeds are read only.
  if "$BDIR/fuzz_$t" "$work" "$seeds" -max_total_time="$SECS" -max_len=65536 -rss_limit_mb=2048 \
      -timeout=10 -print_final_stats=1 "${SEED_ARG[@]}" -artifact_prefix="$art/" >"$BDIR/$t.log" 2>&1; then
    grep -E '^stat::(number_of_executed_units|new_units_added)' "$BDIR/$t.log" | tr '\n' ' ' >&2; echo >&2
  else
    echo "fuzz: $t FAILED — see $BDIR/$t.log and $art/" >&2
    grep -E 'ERROR|contract violated|SUMMARY' "$BDIR/$t.log" | head -5 >&2 || true
    failed+=("$t")
  fi
done
# Leave no scratch directories behind (the harness writes under $TMPDIR/phasemap-fuzz-<pid>).
rm -rf "${TMPDIR:-/tmp}"/phasemap-fuzz-* 2>/dev/null || true
if ((${#failed[@]})); then echo "fuzz: crashes in: ${failed[*]}" >&2; exit 1; fi
echo "fuzz: all targets clean (${SECS}s each)" >&2
