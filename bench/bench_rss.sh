#!/usr/bin/env bash
# Peak RSS of `phasemap generate -o` against run length: the same model, prompt and settings for
# SHORT and LONG generated tokens (the context, LONG + 64, must fit the training context: phasemap
# refuses a larger --ctx), every layer captured and the full logits saved (the largest
# per-token output). The run writer streams to disk, so the peak must stay flat.
#
#   bench/bench_rss.sh PHASEMAP MODEL [SHORT=64] [LONG=448] [THREADS=2]
# Prints one JSON object per run: {"n_predict", "tokens", "max_rss_kb", "wall_s", "npz_bytes",
# "array_bytes"} (tokens and array sizes read back from the NPZ with numpy).
set -euo pipefail
BIN=$1 MODEL=$2 SHORT=${3:-64} LONG=${4:-448} THREADS=${5:-2}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pm-bench-rss.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
ctx=$((LONG + 64))
for n in "$SHORT" "$LONG"; do
  /usr/bin/time -f "%M %e" -o "$tmp/time" "$BIN" generate -m "$MODEL" -p "The history of the city begins" \
    -n "$n" --ctx "$ctx" --layers hf:all --save-logits -t "$THREADS" -q -o "$tmp/run.npz"
  read -r rss wall < "$tmp/time"
  /usr/bin/python3 - "$tmp/run.npz" "$n" "$rss" "$wall" <<'PY'
import json, os, sys
import numpy as np
p, n, rss, wall = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
z = np.load(p)
arr = sum(z[k].nbytes for k in z.files if k != "metadata.json")
print(json.dumps({"n_predict": n, "tokens": int(z["token_ids"].shape[0]), "max_rss_kb": rss, "wall_s": wall,
                  "npz_bytes": os.path.getsize(p), "array_bytes": int(arr),
                  "hidden_states_shape": list(z["hidden_states"].shape), "logits_shape": list(z["logits"].shape)}))
PY
  rm -f "$tmp/run.npz"
done
