#!/usr/bin/env bash
# The main job: generate a story on the default model, capture every layer, and analyse it.
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
echo "== phasemap demo on $model"
"$bin" --version
"$bin" generate -m "$model" -p "Once upon a time" -n 48 --layers hf:all --save-logits --analyze -o "$out/story.npz"
echo
echo "== run file: $out/story.npz (numpy: np.load('$out/story.npz'))"
"$bin" analyze "$out/story.npz" --json "$out/story.summary.json" --tokens
echo "== summary JSON: $out/story.summary.json"
