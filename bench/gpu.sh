#!/usr/bin/env bash
# GPU readiness check (docs: BENCHMARKS.md "GPU"; not part of CI or `make bench`). On a machine
# with CUDA, in one short run:
#   1. builds llama.cpp with PHASEMAP_CUDA=ON into its own cache (GPU_CACHE, default
#      ~/.cache/phasemap-cuda: the CPU cache is never touched) and phasemap into BUILD_DIR;
#   2. capture overhead: bench_capture on the real-shape qwen2, every layer offloaded
#      (PHASEMAP_GPU_LAYERS=-1) — capture off / hf:all ÷ the plain llama.cpp loop, and plain
#      llama.cpp's 16-sequence ÷ 1-sequence batching ratio;
#   3. batching: bench_panel, panel ×4 and ×16 ÷ ×1;
#   4. the output-statistics path: when `phasemap generate --help` offers an option whose name
#      holds "stats" (the in-graph statistics of issue #20), `generate` is timed with each of its
#      values; otherwise the step says the option is absent.
# The figures are ratios measured in the same run, printed to stdout (and kept in OUT_DIR).
#
#   bash bench/gpu.sh [--dry-run] [--help]
#   --dry-run   check the tools and print every command without building or running anything
#               (what the test suite runs on a machine without a GPU)
#   GPU_CACHE, BUILD_DIR (build-cuda), OUT_DIR (out/gpu), TOKENS (32), REPS (3), THREADS (0)
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=0
case "${1:-}" in
  --dry-run) DRY=1 ;;
  --help|-h) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "gpu.sh: unknown argument '$1' (use --dry-run or --help)" >&2; exit 2 ;;
esac
GPU_CACHE=${GPU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/phasemap-cuda}
BUILD_DIR=${BUILD_DIR:-build-cuda} OUT_DIR=${OUT_DIR:-out/gpu}
TOKENS=${TOKENS:-32} REPS=${REPS:-3} THREADS=${THREADS:-0}
MODEL="$GPU_CACHE/bench/qwen2-real.gguf"
log() { printf '[gpu] %s\n' "$*" >&2; }
run() {  # run CMD...: print, and execute unless --dry-run
  log "$*"
  [ "$DRY" = 1 ] || "$@"
}

if [ "$DRY" = 0 ]; then
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >&2 || { log "no CUDA device (nvidia-smi -L failed): nothing to measure"; exit 1; }
  command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ] || { log "nvcc not found: install the CUDA toolkit"; exit 1; }
  export PATH="$PATH:/usr/local/cuda/bin"
fi
[ "$DRY" = 1 ] && OUT_DIR=$(mktemp -d "${TMPDIR:-/tmp}/pm-gpu-dry.XXXXXX") || mkdir -p "$BUILD_DIR" "$OUT_DIR"

# 1. Builds: llama.cpp (CUDA) in its own cache, then phasemap against it.
run env PHASEMAP_CACHE="$GPU_CACHE" PHASEMAP_CUDA=ON bash scripts/deps.sh
if [ "$DRY" = 0 ]; then
  PHASEMAP_CACHE="$GPU_CACHE" PHASEMAP_CUDA=ON bash scripts/deps.sh > "$BUILD_DIR/deps.env"
  # shellcheck disable=SC1091
  source "$BUILD_DIR/deps.env"
fi
run cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DPHASEMAP_LLAMA_SRC="${PHASEMAP_LLAMA_SRC:-<deps>}" -DPHASEMAP_LLAMA_BUILD="${PHASEMAP_LLAMA_BUILD:-<deps>}" \
  -DPHASEMAP_DUCKDB_INCLUDE="${PHASEMAP_DUCKDB_INCLUDE:-<deps>}" -DPHASEMAP_DUCKDB_LIB="${PHASEMAP_DUCKDB_LIB:-<deps>}" \
  -DPHASEMAP_REPORT_ASSETS="${PHASEMAP_REPORT_ASSETS:-<deps>}" -DPHASEMAP_CCACHE_DIR="${PHASEMAP_CCACHE_DIR:-}"
run cmake --build "$BUILD_DIR" --target phasemap bench_capture bench_panel
PM="$BUILD_DIR/phasemap"
[ "$DRY" = 1 ] || mkdir -p "$(dirname "$MODEL")"
[ -s "$MODEL" ] || run "$PM" make-model --arch qwen2 --size real -o "$MODEL"

# Every layer on the device for phasemap's engine (Model::load reads PHASEMAP_GPU_LAYERS) and
# for the plain loop (llama.cpp's default offloads every layer).
export PHASEMAP_GPU_LAYERS=-1
# 2. Capture overhead and plain llama.cpp's batching ceiling.
run "$BUILD_DIR/bench_capture" "$MODEL" --tokens "$TOKENS" --threads "$THREADS" --reps "$REPS"
[ "$DRY" = 1 ] || "$BUILD_DIR/bench_capture" "$MODEL" --tokens "$TOKENS" --threads "$THREADS" --reps "$REPS" > "$OUT_DIR/capture.out"
# 3. Batching: panel ×4 / ×16 ÷ ×1.
run "$BUILD_DIR/bench_panel" "$MODEL" --threads "$THREADS" --no-db
[ "$DRY" = 1 ] || "$BUILD_DIR/bench_panel" "$MODEL" --threads "$THREADS" --no-db > "$OUT_DIR/panel.out"
# 4. Output statistics in the graph or on the host, when the option exists.
STATS_OPT=
if [ -x "$PM" ]; then
  STATS_OPT=$("$PM" generate --help 2>/dev/null | grep -o -- '--[a-z-]*stats[a-z-]*' | head -1 || true)
fi
: > "$OUT_DIR/stats.out"
if [ -n "$STATS_OPT" ]; then
  values=$("$PM" generate --help | grep -- "$STATS_OPT" | grep -o '{[^}]*}' | tr -d '{} ' | tr ',' ' ')
  for v in ${values:-graph host}; do
    t0=$(date +%s.%N)
    run "$PM" generate -m "$MODEL" -f <(yes "The history of the city begins" | head -16) -n "$TOKENS" --parallel 16 \
      -q --layers hf:all "$STATS_OPT" "$v"
    echo "stats $STATS_OPT $v: $(echo "$(date +%s.%N) - $t0" | bc) s" | tee -a "$OUT_DIR/stats.out"
  done
else
  echo "stats: phasemap generate has no in-graph statistics option in this build (step skipped)" | tee -a "$OUT_DIR/stats.out"
fi

if [ "$DRY" = 0 ]; then
  echo "== capture overhead (bench_capture, every layer on the device)"; cat "$OUT_DIR/capture.out"
  echo "== batching (bench_panel)"; grep -E "speed-up|tok/s" "$OUT_DIR/panel.out" || cat "$OUT_DIR/panel.out"
  echo "== output statistics path"; cat "$OUT_DIR/stats.out"
  echo "== device"; nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
fi
[ "$DRY" = 1 ] && rm -rf "$OUT_DIR"
log "done"
