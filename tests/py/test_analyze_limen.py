"""`phasemap analyze` on NPZ files in LIMEN's extraction layout written by numpy, checked against
an independent numpy implementation of METRICS.md §1–§3 and §5.

Usage: test_analyze_limen.py PHASEMAP_BINARY SOURCE_DIR BUILD_DIR  (exit 77 = skipped)
"""
import json
import math
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError:
    print("SKIP: numpy is not installed for", sys.executable)
    sys.exit(77)

binary = sys.argv[1]
failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", what)


def close(a, b, rel=1e-9):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= rel * max(1.0, abs(b))


def token_axis(h):  # h: [T, d] float64
    x = h / np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-12)
    v = x[1:] - x[:-1]
    delta = np.linalg.norm(v, axis=1)
    a, b = v[1:], v[:-1]
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    cos = np.where((na > 0) & (nb > 0), (a * b).sum(axis=1) / np.maximum(na * nb, 1e-300), 1.0)
    curv = 1.0 - np.clip(cos, -1, 1)
    ct = delta[1:] * curv
    ratio = ct.max() / ct.mean() if len(ct) >= 3 and ct.mean() > 0 else None
    k = math.ceil(len(ct) / 4)
    late = ct[-k:].mean()
    return ct, ratio, late


def layer_axis(hs):  # hs: [T, L, d] float64 → per-token metrics
    out = {k: [] for k in ["path_length", "displacement", "tortuosity", "mean_speed", "speed_cv",
                           "mean_acceleration", "mean_turning_angle_rad"]}
    for h in hs:
        v = h[1:] - h[:-1]
        sp = np.linalg.norm(v, axis=1)
        acc = np.linalg.norm(v[1:] - v[:-1], axis=1)
        disp = np.linalg.norm(h[-1] - h[0])
        n1, n2 = sp[:-1], sp[1:]
        cos = np.where((n1 > 0) & (n2 > 0), (v[:-1] * v[1:]).sum(axis=1) / np.maximum(n1 * n2, 1e-300), 1.0)
        out["path_length"].append(sp.sum())
        out["displacement"].append(disp)
        out["tortuosity"].append(sp.sum() / disp if disp > 0 else float("nan"))
        out["mean_speed"].append(sp.mean())
        out["speed_cv"].append(sp.std() / sp.mean() if sp.mean() > 0 else 0.0)
        out["mean_acceleration"].append(acc.mean())
        out["mean_turning_angle_rad"].append(np.arccos(np.clip(cos, -1, 1)).mean())
    return {k: np.array(v) for k, v in out.items()}


def summary(x):
    x = x[np.isfinite(x)]
    return dict(n=len(x), median=float(np.median(x)), q1=float(np.quantile(x, 0.25)), q3=float(np.quantile(x, 0.75)))


rng = np.random.default_rng(1234)
T, L, d, V = 40, 7, 32, 50
# A random walk in state space plus a drift, per layer.
base = np.cumsum(rng.normal(size=(T, 1, d)), axis=0) + rng.normal(size=(1, L, d)) * 3
states = (base + 0.3 * rng.normal(size=(T, L, d))).astype(np.float16)
logits = (rng.normal(size=(T, V)) * 3).astype(np.float32)
logits[::5, 7] += 12  # some confident tokens → COLLAPSE
ids = logits.argmax(axis=1).astype(np.int32)

with tempfile.TemporaryDirectory() as tmp:
    f = os.path.join(tmp, "limen.npz")
    np.savez_compressed(f, hidden_states=states, logits=logits, token_ids=ids)
    out = os.path.join(tmp, "s.json")
    r = subprocess.run([binary, "analyze", f, "--json", out, "-q"], capture_output=True, text=True)
    check(r.returncode == 0, f"analyze exit {r.returncode}: {r.stderr}")
    j = json.load(open(out))
    hs = states.astype(np.float64)
    ct, ratio, late = token_axis(hs[:, -1, :])
    check(close(j["token_axis"]["ratio_norm"], ratio), f"ratio_norm {j['token_axis']['ratio_norm']} vs {ratio}")
    check(close(j["token_axis"]["late_ct"], late), f"late_ct {j['token_axis']['late_ct']} vs {late}")
    got_ct = [c for c in j["per_token"]["ct_t"] if c is not None]
    check(len(got_ct) == T - 2 and np.allclose(got_ct, ct, rtol=1e-9, atol=1e-15), "ct_t series")
    check(j["per_token"]["ct_t"][:2] == [None, None], "ct_t undefined for t < 2")
    la = layer_axis(hs)
    for k, v in la.items():
        s = summary(v)
        g = j["summary"]["trajectory." + k]
        check(g["n"] == s["n"] and all(close(g[q], s[q]) for q in ("median", "q1", "q3")), f"{k}: {g} vs {s}")
    # §1 stats from the logits (float64) and §5 states.
    p = np.exp(logits.astype(np.float64) - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    ent = -(p * np.log(np.maximum(p, 1e-300))).sum(axis=1)
    srt = np.sort(p, axis=1)
    top1, margin = srt[:, -1], srt[:, -1] - srt[:, -2]
    check(close(j["summary"]["baseline.entropy_nats"]["median"], float(np.median(ent))), "entropy median")
    check(close(j["summary"]["baseline.top1_top2_margin"]["q3"], float(np.quantile(margin, 0.75))), "margin q3")
    states_py = np.where(top1 >= 0.9, "COLLAPSE", np.where(margin <= 0.2, "RIVALRY", np.where(ent >= 2.5, "DIFFUSE", "STEADY")))
    check(list(states_py) == j["per_token"]["output_state"], "output states")
    check(close(j["output_states"]["collapse_rate"], float((states_py == "COLLAPSE").mean())), "collapse rate")
    check(j["input"]["hidden_states_shape"] == [T, L, d] and j["input"]["logits_shape"] == [T, V], "input shapes")
    check(j["embedding_output_included"] is False, "no embedding in LIMEN layout")

    # Same states as float32, stored (not compressed), int64 ids, no logits: no output states.
    f2 = os.path.join(tmp, "limen32.npz")
    np.savez(f2, hidden_states=states.astype(np.float32), token_ids=ids.astype(np.int64))
    r = subprocess.run([binary, "analyze", f2, "--json", out, "-q"], capture_output=True, text=True)
    check(r.returncode == 0, f"analyze f32 exit {r.returncode}: {r.stderr}")
    j2 = json.load(open(out))
    check(close(j2["token_axis"]["ratio_norm"], ratio), "float32 copy gives the same ratio_norm")
    check("missing_reason" in j2["output_states"], "no logits → output states missing with a reason")

print(f"analyze LIMEN-layout check: {failures} failed")
sys.exit(1 if failures else 0)
