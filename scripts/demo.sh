#!/usr/bin/env bash
# The main job, on a small panel of six models (examples/demo_panel.toml):
#   1. generate a story, capture every layer, analyse it (text, per-token ct_t and output state,
#      ratio_norm and regime, layer-axis summaries, shuffled-order controls);
#   2. make the panel's models (a quantised and a LoRA variant of stories260K, two random-weight
#      architectures) and run the panel into a DuckDB results store;
#   3. a control audit and a monitor evaluation of stories260K into the same store;
#   4. audit the panel (with the demo's hypotheses) and write the HTML report.
# Output goes to $PHASEMAP_DEMO_OUT (default out/demo). A command that prints both a table (stdout)
# and messages (stderr) runs through step(): its stdout first, then its messages, so a pipe or a log
# file never interleaves them.
set -euo pipefail
bin=$1
model=${2:-}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
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
rwkv=${PHASEMAP_RWKV_MODEL:-$(dirname "$model")/tiny-rwkv7-834K.gguf}
out=${PHASEMAP_DEMO_OUT:-out/demo}
mkdir -p "$out/models"
out=$(realpath "$out")

# step LOG CMD...: runs CMD with its stdout on the terminal and its messages (stderr) in LOG,
# printed after it; on failure the messages and a non-zero exit.
step() {
  local log=$1 rc=0
  shift
  "$@" 2> "$log" || rc=$?
  cat "$log"
  if [ "$rc" -ne 0 ]; then echo "phasemap demo: failed (exit $rc): $*" >&2; exit "$rc"; fi
}

echo "== $("$bin" --version)"
echo "== model: $model"
echo
echo "== 1. one run: generate + analyse"
step "$out/story.log" "$bin" generate -m "$model" -p "Once upon a time" -n 48 --layers hf:all --save-logits \
  -o "$out/story.npz" --analyze --tokens --shuffles 200 --json "$out/story.summary.json"

echo
echo "== 2. the panel's models (examples/demo_panel.toml; paths relative to the manifest)"
cp "$root/examples/demo_panel.toml" "$out/panel.toml"
ln -sf "$model" "$out/models/stories260K.gguf"
if [ -f "$rwkv" ]; then
  ln -sf "$(realpath "$rwkv")" "$out/models/tiny-rwkv7-834K.gguf"
else
  echo "   no $rwkv (set PHASEMAP_RWKV_MODEL): the panel runs without tiny-rwkv7"
  # Drop the tiny-rwkv7 [[models]] table (blank-line separated) from the copy.
  awk -v RS= -v ORS='\n\n' '!/label  = "tiny-rwkv7"/' "$root/examples/demo_panel.toml" > "$out/panel.toml"
fi
"$bin" quantize "$out/models/stories260K.gguf" "$out/models/stories260K-q8_0.gguf" --type Q8_0 -q
"$bin" make-model --lora-for "$out/models/stories260K.gguf" --seed 3 -o "$out/models/stories260K-lora.gguf"
"$bin" make-model --arch gpt2 --size tiny --seed 11 -o "$out/models/rand-gpt2.gguf"
"$bin" make-model --arch gemma2 --size tiny --seed 12 -o "$out/models/rand-gemma2.gguf"
echo "   (the two make-model architectures have random weights: the report labels them so)"

echo
echo "== 3. the panel into DuckDB"
rm -f "$out/panel.duckdb"
step "$out/panel.log" "$bin" panel plan "$out/panel.toml"
"$bin" panel run "$out/panel.toml" --db "$out/panel.duckdb"
"$bin" export "$out/panel.duckdb" --parquet "$out/parquet.tmp"
rm -rf "$out/parquet" && mv "$out/parquet.tmp" "$out/parquet"

echo
echo "== 4. a control audit and a monitor evaluation of stories260K (stored in the same DB)"
"$bin" control-audit -q -m "$model" --prompts "$root/examples/demo_prompts.txt" \
  --intervene "noise:block:2:0.5@seed=3" -n 12 --bootstrap 500 --db "$out/panel.duckdb"
"$bin" monitor-eval -q -m "$model" --data "$root/examples/demo_qa.csv" -n 12 --bootstrap 500 \
  --db "$out/panel.duckdb"
echo "   stored as control_audit › control and monitor_eval › monitor"

echo
echo "== 5. audit and report"
step "$out/audit.log" "$bin" audit "$out/panel.duckdb" --hypotheses "$root/examples/demo_hypotheses.toml" --json "$out/audit.json"
"$bin" report "$out/panel.duckdb" --hypotheses "$root/examples/demo_hypotheses.toml" \
  --runs-json "$out/story.summary.json" -o "$out/report.html"
echo
echo "== outputs in $out/:"
echo "   story.npz            run file (python: np.load('$out/story.npz'))"
echo "   story.summary.json   per-run summary (re-create: $bin analyze $out/story.npz --json FILE)"
echo "   panel.toml, models/  the demo panel (examples/demo_panel.toml) and the models it names"
echo "   panel.duckdb         results store; parquet/ holds one Parquet file per table"
echo "   audit.json           panel audit"
echo "   report.html          the report: open it in a browser (works offline)"
