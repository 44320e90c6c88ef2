"""phasemap.analyze and phasemap.metrics vs `phasemap analyze` on the same arrays."""
import json

import numpy as np
import pytest

import phasemap
from conftest import cli

# Fields of the summary that name the input file (the array has none).
FILE_FIELDS = {"source_npz_sha256", "source", "file", "provenance"}


def strip(j):
    if isinstance(j, dict):
        return {k: strip(v) for k, v in j.items() if k not in FILE_FIELDS}
    if isinstance(j, list):
        return [strip(v) for v in j]
    return j


def cli_summary(tmp_path, args=(), **arrays):
    npz = tmp_path / "a.npz"
    np.savez(npz, **arrays)
    out = tmp_path / "a.json"
    cli("analyze", npz, "--json", out, "-q", *args)
    return json.loads(out.read_text())


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_analyze_array_equals_cli(tmp_path, dtype):
    h = np.cumsum(np.random.default_rng(1).standard_normal((40, 6, 24)), axis=0).astype(dtype)
    want = cli_summary(tmp_path, hidden_states=h)
    got = phasemap.analyze(h)
    assert strip(got) == strip(want)  # same numbers, bitwise (JSON shortest round-trip form)


def test_analyze_with_logits_and_options(tmp_path):
    rng = np.random.default_rng(2)
    h = rng.standard_normal((30, 5, 16)).astype(np.float32)
    logits = rng.standard_normal((30, 50)).astype(np.float32) * 3
    ids = rng.integers(0, 50, 30).astype(np.int64)
    args = ["--norm", "clipped_mad", "--curvature", "angle", "--shuffles", "20", "--metric-layer", "-2"]
    want = cli_summary(tmp_path, args, hidden_states=h, logits=logits, token_ids=ids)
    got = phasemap.analyze(h, logits=logits, token_ids=ids, norm="clipped_mad", curvature="angle", shuffles=20, layer=-2)
    assert strip(got) == strip(want)


def test_analyze_run_equals_cli_on_its_npz(model, model_path, tmp_path):
    out = tmp_path / "run.npz"
    cli("generate", "-m", model_path, "-p", "Once upon a time", "-n", 24, "-t", 1, "-o", out, "-q")
    js = tmp_path / "run.json"
    cli("analyze", out, "--json", js, "-q")
    run = model.generate("Once upon a time", n=24)[0]
    assert strip(phasemap.analyze(run)) == strip(json.loads(js.read_text()))


def test_metric_functions_match_analyze():
    h = np.cumsum(np.random.default_rng(4).standard_normal((32, 4, 8)), axis=0).astype(np.float32)
    s = phasemap.analyze(h)
    names = [m["name"] for m in phasemap.metrics.registry()]
    assert "ct_t" in names and "ratio_norm" in names
    ct = phasemap.metrics.ct(h)
    want = np.array([np.nan if v is None else v for v in s["per_token"]["ct_t"]])
    assert np.array_equal(ct, want, equal_nan=True)
    assert phasemap.metrics.ratio_norm(h) == s["token_axis"]["ratio_norm"]
    assert "ct_t" in phasemap.metrics.ct_t.__doc__ or phasemap.metrics.ct_t.__doc__


def test_analyze_bad_inputs():
    with pytest.raises(ValueError, match="rank 2"):
        phasemap.analyze(np.zeros((4, 4), np.float32))
    h = np.random.default_rng(0).standard_normal((10, 3, 4)).astype(np.float32)
    h[5, 1, 2] = np.nan
    with pytest.raises(ValueError, match=r"non-finite value \(nan\) at \[5, 1, 2\]"):
        phasemap.analyze(h)
    with pytest.raises(ValueError, match="norm"):
        phasemap.analyze(np.ones((10, 3, 4), np.float32), norm="nope")
    with pytest.raises(ValueError, match="unknown option"):
        phasemap.analyze(np.ones((10, 3, 4), np.float32), colour="blue")
