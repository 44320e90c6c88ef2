#!/usr/bin/env python3
"""phasemap from Python in one page (docs/python.md). Run after `make demo`:

    PYTHONPATH=build/python /usr/bin/python3 examples/quickstart.py [MODEL.gguf]

It loads stories260K, generates with every layer captured, prints a plot-free summary, analyses
an external numpy array, runs a tiny panel and reads it back as pandas DataFrames.
"""
import os
import sys
import tempfile

import numpy as np

import phasemap

here = os.path.dirname(os.path.abspath(__file__))
model_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "shared", "models", "stories260K.gguf")
if not os.path.exists(model_path):
    print(f"SKIP: no model at {model_path}")
    sys.exit(77)

print(phasemap.version_string())

# 1. Load a GGUF model and generate with all layers captured.
model = phasemap.Model(model_path)
print("model:", model.info["architecture"], f"L={model.info['n_layer']} d={model.info['n_embd']}")
run = model.generate("Once upon a time", n=32, layers="hf:all")[0]
print(f"text: {run.prompt_text}{run.text}")
print("hidden_states", run.hidden_states.shape, run.hidden_states.dtype, "layers", run.layers)

# 2. A plot-free summary: phasemap's metrics of this run.
s = phasemap.analyze(run)
ta = s["token_axis"]
print(f"ratio_norm {ta['ratio_norm']}  regime {ta['regime']}  late_ct {ta['late_ct']}")
print("mean entropy (nats):", float(np.mean(run.entropy)))

# 3. Tokens as they come: stop whenever you like.
for step in model.stream("The little dog", n=16):
    print(f"  t={step.t:2d} {step.text!r:10} entropy={step.entropy:.3f} state={step.output_state}")
    if step.t == 5:
        break

# 4. Metrics on any array (e.g. Hugging Face hidden states you captured yourself).
h = np.cumsum(np.random.default_rng(0).standard_normal((48, 8, 32)), axis=0).astype(np.float16)
ext = phasemap.analyze(h)
print("external array: ratio_norm", ext["token_axis"]["ratio_norm"], "ct_t[2:5]", phasemap.metrics.ct(h)[2:5])

# 5. A tiny panel into a results DB, read back as pandas.
with tempfile.TemporaryDirectory() as d:
    manifest = os.path.join(d, "panel.toml")
    with open(manifest, "w") as f:
        f.write(f"""name = "quickstart"
[generation]
temperatures = [0.0]
n_predict = [8]
seeds = [1]
[[models]]
label = "stories"
path = "{os.path.abspath(model_path)}"
[[prompts]]
builtin = "stories"
limit = 1
""")
    db = os.path.join(d, "results.duckdb")
    phasemap.panel.run(manifest, db, progress=False)
    st = phasemap.Store(db)
    runs = st.runs()
    print(runs[["model", "category", "ratio_norm", "regime"]])
    print("tokens:", len(st.tokens()), "rows")
print("quickstart: ok")
