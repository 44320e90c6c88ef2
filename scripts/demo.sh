#!/usr/bin/env bash
# The main job, on the default model:
#   1. generate a story, capture every layer, analyse it (text, per-token ct_t and output state,
#      ratio_norm and regime, layer-axis summaries, shuffled-order controls);
#   2. run a small panel (stories prompts × 2 temperatures × 2 seeds) into a DuckDB results store;
#   3. audit the panel and write the HTML report.
set -euo pipefail
bin=$1
model=${2:-}
if [ -z "$model" ] || [ ! -f "$model" ]; then
  cat >&2 <<'MSG'
phasemap demo: no model found.
  The demo uses ../shared/models/stories260K.gguf when it exists, else the GGUF file named by
  PHASEMAP_MODEL, e.g.  PHASEMAP_MODEL=/path/to/model.gguf make demo
  Any GGUF that llama.cpp loads works; `phasemap make-model` writes random-weight test models.
MSG
  exit 1
fi
model=$(realpath "$model")
out=${PHASEMAP_DEMO_OUT:-out/demo}
mkdir -p "$out"
echo "== $("$bin" --version)"
echo "== model: $model"
echo
echo "== 1. one run: generate + analyse"
"$bin" generate -m "$model" -p "Once upon a time" -n 48 --layers hf:all --save-logits \
  -o "$out/story.npz" --analyze --tokens --shuffles 200 --json "$out/story.summary.json"

echo
echo "== 2. a small panel into DuckDB"
cat > "$out/panel.toml" <<TOML
name = "phasemap-demo"
[generation]
temperatures = [0.0, 0.8]
n_predict    = [48]
seeds        = [1, 2]
layers       = "hf:all"
[metrics]
norms = ["raw", "clipped_mad"]
[[models]]
label  = "default"
path   = "$model"
family = "demo"
[[prompts]]
builtin = "stories"
limit   = 3
TOML
rm -f "$out/panel.duckdb"
"$bin" panel plan "$out/panel.toml"
"$bin" panel run "$out/panel.toml" --db "$out/panel.duckdb"
"$bin" export "$out/panel.duckdb" --parquet "$out/parquet.tmp" && rm -rf "$out/parquet" && mv "$out/parquet.tmp" "$out/parquet"

echo
echo "== 3. audit and report"
"$bin" audit "$out/panel.duckdb" --section regime --section cycles --json "$out/audit.json"
"$bin" report "$out/panel.duckdb" --runs-json "$out/story.summary.json" -o "$out/report.html"
echo
echo "== outputs in $out/:"
echo "   story.npz            run file (python: np.load('$out/story.npz'))"
echo "   story.summary.json   per-run summary (re-create: $bin analyze $out/story.npz --json FILE)"
echo "   panel.duckdb         results store; parquet/ holds one Parquet file per table"
echo "   audit.json           panel audit"
echo "   report.html          the report: open it in a browser (works offline)"
