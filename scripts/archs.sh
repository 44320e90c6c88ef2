#!/usr/bin/env bash
# The architecture sweep's models (docs/architectures.md), idempotently:
#   1. builds llama.cpp's tests/test-llama-archs from the pinned source (scripts/deps.sh fetched
#      and verified it) against the cached libllama — that one program only, with log.cpp,
#      json.cpp and scripts/archs/shim.cpp for the three "common" functions it calls — into
#      <cache>/llama.cpp-<commit>/build-archs/ (rebuilt only when missing);
#   2. writes every architecture × {dense, MoE} it supports with random weights
#      (test-llama-archs -o DIR) into <cache>/llama.cpp-<commit>/archs-models/ (once);
#   3. with --sweep SWEEP_BINARY [ARGS...], runs the sweep on those models.
# Usage: scripts/archs.sh LLAMA_SRC LLAMA_BUILD [--sweep BINARY [ARGS...]]
# Prints "PHASEMAP_ARCHS_MODELS=<dir>" on stdout.
set -euo pipefail
SRC=${1:?LLAMA_SRC}; LIB=${2:?LLAMA_BUILD}; shift 2
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$SRC")
TOOLDIR="$ROOT/build-archs"
MODELS="$ROOT/archs-models"
log() { printf '[archs] %s\n' "$*" >&2; }
[ -f "$SRC/tests/test-llama-archs.cpp" ] || { log "no tests/test-llama-archs.cpp in $SRC"; exit 1; }
[ -f "$LIB/bin/libllama.so" ] || { log "no libllama.so in $LIB/bin (run scripts/deps.sh)"; exit 1; }

# The lock keeps two ctest runs (or engineers) from building into the same directory at once.
mkdir -p "$ROOT"
exec 9>"$ROOT/.archs.lock"
flock 9

if [ ! -x "$TOOLDIR/test-llama-archs" ] || [ "$HERE/archs/shim.cpp" -nt "$TOOLDIR/test-llama-archs" ]; then
  log "building test-llama-archs from $SRC (once)"
  tmp=$(mktemp -d "$ROOT/.build-archs.XXXXXX")
  CXX=${CXX:-g++}
  LAUNCH=; command -v ccache >/dev/null 2>&1 && LAUNCH=ccache
  INC=(-I"$SRC/include" -I"$SRC/ggml/include" -I"$SRC/common" -I"$SRC/src")
  pids=()
  for f in "$SRC/common/log.cpp" "$SRC/common/json.cpp" "$HERE/archs/shim.cpp" "$SRC/tests/test-llama-archs.cpp"; do
    $LAUNCH "$CXX" -std=c++17 -O1 -w "${INC[@]}" -c "$f" -o "$tmp/$(basename "$f").o" & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  "$CXX" "$tmp"/*.o -L"$LIB/bin" -lllama -lggml -lggml-base -Wl,-rpath,"$LIB/bin" -o "$tmp/test-llama-archs"
  rm -rf "$TOOLDIR"; mkdir -p "$TOOLDIR"
  mv "$tmp/test-llama-archs" "$TOOLDIR/"; rm -rf "$tmp"
  rm -rf "$MODELS"
fi
# A fixed seed: test-llama-archs otherwise seeds from std::random_device, and the tests that check
# component identities on these models need the same weights on every machine (a random draw once
# gave a qwen3moe whose MoE output was too small for the check's 100x margin).
SEED=${PHASEMAP_ARCHS_SEED:-20251201}
if [ "$(cat "$MODELS/.phasemap-ok" 2>/dev/null)" != "seed=$SEED" ]; then
  log "writing the random-weight models into $MODELS (once)"
  rm -rf "$MODELS.tmp"; mkdir -p "$MODELS.tmp"
  "$TOOLDIR/test-llama-archs" -s "$SEED" -o "$MODELS.tmp" > "$MODELS.tmp.log" 2>&1 || { log "test-llama-archs failed:"; tail -20 "$MODELS.tmp.log" >&2; exit 1; }
  rm -rf "$MODELS"; mv "$MODELS.tmp" "$MODELS"; mv "$MODELS.tmp.log" "$MODELS/generate.log"
  echo "seed=$SEED" > "$MODELS/.phasemap-ok"
fi
flock -u 9
echo "PHASEMAP_ARCHS_MODELS=$MODELS"
if [ "${1:-}" = "--sweep" ]; then
  shift
  BIN=${1:?sweep binary}; shift
  exec "$BIN" --models "$MODELS" "$@"
fi
