"""Model, generate, Run vs the CLI's NPZ, streaming, hooks, interrupts."""
import _thread
import gc
import json
import threading
import zipfile

import numpy as np
import pytest

import phasemap
from conftest import cli

PROMPT = "Once upon a time"


def load_npz(path):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != "metadata.json"}
    with zipfile.ZipFile(path) as zf:
        meta = json.loads(zf.read("metadata.json"))
    return arrays, meta


def test_version_matches_cli():
    _, out, _ = cli("--version")
    assert phasemap.version_string() in out
    assert out.split()[1] == phasemap.__version__


def test_model_info_and_tokens(model, model_path):
    info = model.info
    assert info["path"].endswith("stories260K.gguf")
    assert info["n_layer"] > 0 and info["n_embd"] > 0 and info["n_vocab"] > 0
    ids = model.tokenize("Once upon a time", add_special=False)
    assert len(ids) > 0 and all(isinstance(i, int) for i in ids)
    assert model.detokenize(ids).strip() == "Once upon a time"
    assert "".join(model.token_text(i) for i in ids).strip() == "Once upon a time"


@pytest.mark.parametrize("settings", [
    dict(n=12, layers="hf:all", save_logits=True),
    dict(n=10, layers="block:1,hf:last", temperature=0.8, top_k=20, top_p=0.9, seed=7),
    dict(n=12, layers="hf:1", output_stats="graph"),
])
def test_run_equals_cli_npz(model, model_path, tmp_path, settings):
    out = tmp_path / "run.npz"
    args = ["generate", "-m", model_path, "-p", PROMPT, "-n", settings["n"], "--layers", settings["layers"], "-t", 1, "-o", out, "-q"]
    if settings.get("save_logits"):
        args.append("--save-logits")
    for k, flag in (("temperature", "--temp"), ("top_k", "--top-k"), ("top_p", "--top-p"), ("seed", "--seed"),
                    ("output_stats", "--output-stats")):
        if k in settings:
            args += [flag, settings[k]]
    cli(*args)
    arrays, meta = load_npz(out)
    run = model.generate(PROMPT, **settings)[0]
    for name in ("hidden_states", "token_ids", "positions", "entropy", "top1", "margin", "surprisal", "prompt_ids"):
        a, b = getattr(run, name), arrays[name]
        assert a.dtype == b.dtype, name
        assert a.shape == b.shape, name
        assert a.tobytes() == b.tobytes(), name  # bitwise
    if settings.get("save_logits"):
        assert run.logits.dtype == np.float32 and run.logits.tobytes() == arrays["logits"].tobytes()
    else:
        assert run.logits is None and "logits" not in arrays
    assert run.metadata == meta
    assert run.tokens == meta["tokens"]
    assert run.text == meta["generated_text"]
    assert run.layers == [l["label"] for l in meta["layers"]]
    # #12: every captured layer carries its LayerId kind, index and depth.
    for l in meta["layers"]:
        kind, idx = l["label"].split(":")
        assert l["kind"] == kind and l["index"] == int(idx)
        n_layer = meta["model"]["n_layer"]
        want = (int(idx) + 1 if kind == "block" else (n_layer + 0.5 if int(idx) == n_layer else int(idx)))
        assert l["depth"] == want


def test_output_stats_in_the_graph_equal_the_host_reference(model):
    host = model.generate(PROMPT, n=12, output_stats="host")[0]
    graph = model.generate(PROMPT, n=12, output_stats="graph")[0]
    assert graph.token_ids.tolist() == host.token_ids.tolist()
    assert graph.metadata["engine"]["output_stats"] == "graph" and host.metadata["engine"]["output_stats"] == "host"
    # Per run: the path it took; a sampled run keeps the host path in graph mode.
    assert graph.metadata["output_stats"] == "graph" and host.metadata["output_stats"] == "host"
    sampled = model.generate(PROMPT, n=4, output_stats="graph", temperature=0.8, seed=3)[0]
    assert sampled.metadata["engine"]["output_stats"] == "graph" and sampled.metadata["output_stats"] == "host"
    for k in ("entropy", "top1", "margin", "surprisal"):
        a, b = getattr(host, k), getattr(graph, k)
        assert np.all(np.abs(a - b) <= 1e-6 * np.maximum(1.0, np.abs(a))), k
    steps = list(model.stream(PROMPT, n=12, output_stats="graph"))
    assert [s.entropy for s in steps] == graph.entropy.tolist()
    with pytest.raises(ValueError, match="output statistics path 'gpu'"):
        model.generate(PROMPT, n=2, output_stats="gpu")


def test_hidden_states_are_a_view(model):
    run = model.generate(PROMPT, n=4)[0]
    hs = run.hidden_states
    assert not hs.flags.owndata and hs.base is not None  # the engine's recording, no copy
    del run
    gc.collect()
    assert np.isfinite(hs).all()  # the capsule keeps the memory alive


def test_several_prompts_parallel(model):
    prompts = ["Once upon a time", "The little dog", "Lily went"]
    one = [model.generate(p, n=6)[0] for p in prompts]
    par = model.generate(prompts, n=6, parallel=3)
    assert [r.tokens for r in par] == [r.tokens for r in one]
    for a, b in zip(par, one):
        assert np.array_equal(a.token_ids, b.token_ids)


def test_stream_equals_generate(model):
    run = model.generate(PROMPT, n=10)[0]
    steps = list(model.stream(PROMPT, n=10))
    assert [s.token_id for s in steps] == run.token_ids.tolist()
    assert [s.text for s in steps] == run.tokens
    offline = phasemap.analyze(run)["per_token"]  # ct_t at the last captured layer, output states
    for t, s in enumerate(steps):
        assert s.t == t
        assert np.array_equal(s.states, run.hidden_states[t])
        assert s.entropy == run.entropy[t] and s.top1 == run.top1[t]
        assert s.output_state == offline["output_state"][t]
        assert (np.isnan(s.ct) and offline["ct_t"][t] is None) or s.ct == offline["ct_t"][t]
    assert np.isnan(steps[0].ct) and np.isnan(steps[1].ct)
    assert all(np.isfinite(s.ct) for s in steps[2:])


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_stream_break_frees_the_sequence(model):
    ref = model.generate(PROMPT, n=8)[0]

    def broken_streams(k, close):
        for _ in range(k):
            st = model.stream(PROMPT, n=200)
            for s in st:
                if s.t == 2:
                    break
            if close:
                st.close()
            del st  # dropping a stream closes it too
            assert threading.active_count() == 1  # the worker is joined

    broken_streams(5, True)
    before = rss_bytes()
    broken_streams(20, True)
    broken_streams(20, False)
    # memory stays flat: every broken stream frees its engine (a leaked one holds its KV cache)
    assert rss_bytes() - before < 16 << 20
    again = model.generate(PROMPT, n=8)[0]
    assert again.hidden_states.tobytes() == ref.hidden_states.tobytes()


def test_hook_add_equals_native_add(model, tmp_path):
    d = model.info["n_embd"]
    v = np.random.default_rng(3).standard_normal(d).astype(np.float32)
    np.save(tmp_path / "v.npy", v)
    native = model.generate(PROMPT, n=8, interventions=[f"add:block:2:{tmp_path / 'v.npy'}:1.0"])[0]
    plain = model.generate(PROMPT, n=8)[0]
    seen = []

    def hook(step, state):
        assert state.shape == (d,) and state.dtype == np.float32
        seen.append(step)
        state += v

    hooked = model.generate(PROMPT, n=8, hooks={"block:2": hook})[0]
    assert seen == list(range(len(hooked)))
    assert hooked.token_ids.tolist() == native.token_ids.tolist()
    assert np.max(np.abs(hooked.hidden_states - native.hidden_states)) <= 1e-6
    assert not np.array_equal(hooked.hidden_states, plain.hidden_states)  # the hook did change the states


def test_hook_that_raises_stops_generation(model):
    ref = model.generate(PROMPT, n=8)[0]
    calls = []

    def hook(step, state):
        calls.append(step)
        if step == 3:
            raise ZeroDivisionError("hook failed at step 3")

    with pytest.raises(ZeroDivisionError, match="hook failed at step 3"):
        model.generate(PROMPT, n=8, hooks={"block:1": hook})
    assert calls == [0, 1, 2, 3]  # generation ended at the raising step
    again = model.generate(PROMPT, n=8)[0]
    assert again.hidden_states.tobytes() == ref.hidden_states.tobytes()


def test_keyboard_interrupt_stops_generation(model):
    ref = model.generate(PROMPT, n=8)[0]
    started = threading.Event()

    def hook(step, state):
        if step == 0:
            started.set()

    def interrupt():
        started.wait(10)
        _thread.interrupt_main()

    th = threading.Thread(target=interrupt)
    th.start()
    with pytest.raises(KeyboardInterrupt):
        model.generate(PROMPT, n=400, hooks={"block:0": hook})
    th.join()
    again = model.generate(PROMPT, n=8)[0]
    assert again.hidden_states.tobytes() == ref.hidden_states.tobytes()


def test_bad_inputs(model, model_path):
    with pytest.raises(FileNotFoundError, match="no/such/model.gguf"):
        phasemap.Model("no/such/model.gguf")
    rc, _, err = cli("generate", "-m", model_path, "-p", PROMPT, "-n", 2, "--layers", "hf:99", "-q", check=False)
    assert rc != 0
    with pytest.raises(ValueError) as e:
        model.generate(PROMPT, n=2, layers="hf:99")
    assert str(e.value) in err  # the CLI's message
    with pytest.raises(ValueError, match="block:N"):
        model.generate(PROMPT, n=2, hooks={"hf:2": lambda s, h: None})
    with pytest.raises(ValueError):
        model.generate(PROMPT, n=2, precision="sloppy")
