#!/usr/bin/env bash
# The main job: generate a story on the default model, capture every layer, and analyse it
# (per-token ct_t and output state, ratio_norm and regime, layer-axis summaries).
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
out=${PHASEMAP_DEMO_OUT:-out/demo}
mkdir -p "$out"
echo "== $("$bin" --version)"
echo "== model: $model"
"$bin" generate -m "$model" -p "Once upon a time" -n 48 --layers hf:all --save-logits \
  -o "$out/story.npz" --analyze --tokens --shuffles 200 --json "$out/story.summary.json"
echo
echo "== run file:     $out/story.npz   (python: np.load('$out/story.npz'))"
echo "== summary JSON: $out/story.summary.json   (re-create: $bin analyze $out/story.npz --json FILE)"
