"""numpy reads what `phasemap generate` writes: documented members, shapes and dtypes.

Usage: test_npz_numpy.py PHASEMAP_BINARY SOURCE_DIR BUILD_DIR  (exit 77 = skipped)
"""
import json
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError:
    print("SKIP: numpy is not installed for", sys.executable)
    sys.exit(77)

binary, src = sys.argv[1], sys.argv[2]
model = os.path.join(os.path.dirname(os.path.abspath(src)), "shared", "models", "stories260K.gguf")
if not os.path.exists(model):
    print("SKIP: stories260K.gguf not present")
    sys.exit(77)

failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", what)


with tempfile.TemporaryDirectory() as d:
    for compress in (False, True):
        out = os.path.join(d, "run_c.npz" if compress else "run.npz")
        cmd = [binary, "generate", "-m", model, "-p", "Once upon a time", "-n", "12", "--layers", "hf:all",
               "--save-logits", "-o", out] + (["--compress"] if compress else [])
        subprocess.run(cmd, check=True, capture_output=True)
        z = np.load(out, allow_pickle=False)
        check(set(z.files) >= {"hidden_states", "logits", "token_ids", "positions", "entropy", "top1", "margin",
                               "surprisal", "prompt_ids", "metadata.json"}, f"members {z.files}")
        hs, lg, ids = z["hidden_states"], z["logits"], z["token_ids"]
        check(hs.shape == (12, 6, 64) and hs.dtype == np.float32, f"hidden_states {hs.shape} {hs.dtype}")
        check(lg.shape == (12, 512) and lg.dtype == np.float32, f"logits {lg.shape} {lg.dtype}")
        check(ids.shape == (12,) and ids.dtype == np.int64, f"token_ids {ids.shape} {ids.dtype}")
        check(np.isfinite(hs).all(), "hidden states finite")
        # Greedy: each token is the arg-max of its logits; stats agree with the logits (float64).
        check((lg.argmax(axis=1) == ids).all(), "token ids are the arg-max of the logits")
        p = np.exp(lg.astype(np.float64) - lg.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        ent = -(p * np.log(np.maximum(p, 1e-300))).sum(axis=1)
        # rtol 1e-6: the bound of the default --output-stats graph against this float64 computation
        check(np.allclose(ent, z["entropy"], rtol=1e-6, atol=1e-12), "entropy matches the logits")
        check(np.allclose(p.max(axis=1), z["top1"], rtol=1e-6), "top1 matches the logits")
        meta = json.loads(z["metadata.json"])
        check(meta["n_generated"] == 12 and len(meta["tokens"]) == 12, "metadata token count")
        check(meta["generated_text"].startswith(", there was a little girl"), meta["generated_text"])
        check([l["label"] for l in meta["layers"]] == [f"hf:{i}" for i in range(6)], "layer labels")
        # positions: emitting positions are prompt_len-1, prompt_len, ...
        P = len(z["prompt_ids"])
        check((z["positions"] == np.arange(P - 1, P - 1 + 12)).all(), "emitting positions")

print(f"npz numpy check: {failures} failed")
sys.exit(1 if failures else 0)
