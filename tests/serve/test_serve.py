#!/usr/bin/python3
"""tests/serve: `phasemap serve` on a free loopback port, driven with curl and with concurrent
HTTP clients (stdlib), compared with `phasemap generate`. Every server is killed at the end, even
on failure. usage: test_serve.py PHASEMAP_BINARY  (exit 77 = skipped: no stories260K model)."""
import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import http.client
import numpy as np

BIN = os.path.abspath(sys.argv[1])
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "..", "shared", "models", "stories260K.gguf")
if not os.path.exists(MODEL):
    print("SKIP: ../shared/models/stories260K.gguf is not present")
    sys.exit(77)
ENV = dict(os.environ, PHASEMAP_THREADS="1")
servers = []
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)


class Server:
    def __init__(self, *args):
        self.p = subprocess.Popen([BIN, "serve", "-m", MODEL, "--port", "0", *args], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, env=ENV, text=True)
        servers.append(self)
        line = self.p.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if not m:
            raise RuntimeError("server did not start: " + line)
        self.port = int(m.group(1))

    def request(self, method, path, body=None, headers=None, timeout=60):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        c.request(method, path, body=data, headers=headers or {"Content-Type": "application/json"})
        r = c.getresponse()
        out = r.status, dict(r.getheaders()), r.read()
        c.close()
        return out

    def stream(self, body, timeout=60):
        """Streams a completion; returns (status, [events])."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        c.request("POST", "/v1/completions", body=json.dumps(dict(body, stream=True)), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        if r.status != 200:
            s = r.status
            r.read()
            c.close()
            return s, []
        events = []
        buf = b""
        while True:
            chunk = r.read1(65536) if hasattr(r, "read1") else r.read(1)
            if not chunk:
                break
            buf += chunk
            while b"\n\n" in buf:
                ev, buf = buf.split(b"\n\n", 1)
                if ev.startswith(b"data: "):
                    events.append(ev[6:].decode())
        c.close()
        return 200, events

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                return self.p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                return None
        return self.p.returncode


def curl(*args):
    return subprocess.run(["curl", "-s", "--max-time", "60", *args], capture_output=True, text=True, check=False).stdout


def generate(prompt, n, *extra):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "run.npz")
        js = os.path.join(d, "run.json")
        subprocess.run([BIN, "generate", "-m", MODEL, "-p", prompt, "-n", str(n), "-o", out, "-q", "--analyze", "--json", js, *extra],
                       check=True, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        z = np.load(out)
        return {k: z[k] for k in ("token_ids", "positions", "entropy", "top1", "margin", "surprisal", "hidden_states")}, json.load(open(js))


def tokens_of_events(events):
    toks, final = [], None
    for e in events:
        if e == "[DONE]":
            continue
        j = json.loads(e)
        if "token" in j.get("phasemap", {}):
            toks.append(j["phasemap"]["token"])
        elif j["choices"][0]["finish_reason"] is not None:
            final = j
    return toks, final


def same_as_generate(toks, ref, what):
    check([t["id"] for t in toks] == list(ref["token_ids"]), what + ": token ids equal generate's")
    for k in ("entropy", "top1", "margin", "surprisal"):
        # JSON numbers carry doubles exactly (17 significant digits): bitwise.
        check(all(float(t[k]) == float(v) for t, v in zip(toks, ref[k])), f"{what}: {k} bitwise equal to generate's")


try:
    t0 = time.time()
    dbdir = tempfile.mkdtemp()
    dbpath = os.path.join(dbdir, "served.duckdb")
    s = Server("--parallel", "4", "--queue", "64", "--db", dbpath)
    # --- basic endpoints, through curl
    check(json.loads(curl(f"http://127.0.0.1:{s.port}/health"))["status"] == "ok", "GET /health")
    check(json.loads(curl(f"http://127.0.0.1:{s.port}/v1/models"))["data"][0]["id"] == "stories260K", "GET /v1/models")
    ref, ref_summary = generate("Once upon a time", 12)
    refs_once = list(generate("Once upon a time", 20)[0]["token_ids"])
    body = json.dumps({"model": "stories260K", "prompt": "Once upon a time", "max_tokens": 12})
    j = json.loads(curl("-H", "Content-Type: application/json", "-d", body, f"http://127.0.0.1:{s.port}/v1/completions"))
    toks = j["phasemap"]["tokens"]
    same_as_generate(toks, ref, "curl non-streaming")
    check(j["choices"][0]["text"] == ref_summary["generated_text"], "non-streaming text equals generate's")
    check(j["usage"]["completion_tokens"] == 12, "usage.completion_tokens")
    # The run summary and per-token ct_t are the analysis generate --analyze writes.
    sm = j["phasemap"]["summary"]
    for k in ("summary", "token_axis", "output_states", "per_token"):
        check(sm.get(k) == ref_summary.get(k), f"summary section '{k}' equals generate --analyze --json")
    check(len(sm["per_token"]["ct_t"]) == 12, "per-token ct_t present")
    # streaming through curl -N: SSE chunks in the OpenAI format, [DONE] last
    out = curl("-N", "-H", "Content-Type: application/json", "-d",
               json.dumps({"prompt": "Once upon a time", "max_tokens": 12, "stream": True}), f"http://127.0.0.1:{s.port}/v1/completions")
    events = [e[6:] for e in out.split("\n\n") if e.startswith("data: ")]
    check(events and events[-1] == "[DONE]", "stream ends with [DONE]")
    st, fin = tokens_of_events(events)
    same_as_generate(st, ref, "curl streaming")
    check(fin is not None and fin["choices"][0]["finish_reason"] == "length", "final chunk has finish_reason length")
    check(fin is not None and fin["phasemap"]["summary"]["per_token"] == ref_summary["per_token"], "final chunk summary equals generate's")
    check("".join(json.loads(e)["choices"][0]["text"] for e in events[:-1]) == ref_summary["generated_text"], "streamed text")
    # Per-token geometry in every chunk, computed as each token arrives: equal (bitwise, through
    # the JSON round trip of doubles) to the final summary's per_token series and generate's.
    def geometry_of(toks):
        return {k: [t[k] for t in toks] for k in ("delta_t", "curvature_t", "ct_t")}
    geo = geometry_of(st)
    for k, v in geo.items():
        check(v == fin["phasemap"]["summary"]["per_token"][k], f"streamed {k} equals the final chunk's per_token {k}")
        check(v == ref_summary["per_token"][k], f"streamed {k} equals generate --analyze's")
        check(v == geometry_of(toks)[k], f"non-streaming tokens' {k} equal the streamed ones")
    check(geo["delta_t"][0] is None and geo["ct_t"][1] is None and geo["delta_t"][1] is not None
          and all(x is not None for x in geo["ct_t"][2:]), "geometry is null only where undefined (t < 1, t < 2)")
    # at another metric layer
    _, ref_l2 = generate("Once upon a time", 6, "--metric-layer", "hf:2")
    st2, fin2 = tokens_of_events(s.stream({"prompt": "Once upon a time", "max_tokens": 6, "phasemap": {"metric_layer": "hf:2"}})[1])
    for k, v in geometry_of(st2).items():
        check(v == ref_l2["per_token"][k] and v == fin2["phasemap"]["summary"]["per_token"][k], f"streamed {k} at hf:2 equals generate's")
    check(geometry_of(st2)["ct_t"] != geo["ct_t"][:6], "the metric layer changes the streamed geometry")
    # --- phasemap.analysis options (metrics::AnalysisSettings by name): the summary, the streamed
    # geometry (its curvature; ct_t is the unclipped series, as the summary's per_token) and the
    # DB row follow them, equal to generate --analyze with the same flags.
    analysis_cases = [
        ({"curvature": "angle", "ct_clip": True, "ct_clip_k": 1, "regime_cuts": [1.5, 2.5, 3.5], "late_window": 0.5,
          "collapse_threshold": 0.01, "layer_axis": False, "collapse_top1": 0.5, "rivalry_margin": 0.3, "diffuse_entropy": 1.0,
          "shuffles": 3, "control_seed": 7},
         ["--curvature", "angle", "--ct-clip", "--ct-clip-k", "1", "--regime-cuts", "1.5,2.5,3.5", "--late-window", "0.5",
          "--collapse-threshold", "0.01", "--no-layer-axis", "--collapse-top1", "0.5", "--rivalry-margin", "0.3",
          "--diffuse-entropy", "1.0", "--shuffles", "3", "--control-seed", "7"]),
        ({"curvature": "second_diff", "layer": "hf:3", "regime_cuts": "1,2,3"}, ["--curvature", "second_diff", "--metric-layer", "hf:3",
                                                                                "--regime-cuts", "1,2,3"]),
    ]
    for opts, flags in analysis_cases:
        what = f"analysis {opts.get('curvature')}"
        _, want_sm = generate("Once upon a time", 12, *flags)
        sto, fino = tokens_of_events(s.stream({"prompt": "Once upon a time", "max_tokens": 12, "phasemap": {"analysis": opts}})[1])
        smo = fino["phasemap"]["summary"] if fino else {}
        for k in ("summary", "token_axis", "layer_axis_missing_reason", "output_states", "controls", "per_token", "options"):
            check(smo.get(k) == want_sm.get(k), f"{what}: summary section '{k}' equals generate --analyze {' '.join(flags)}")
        for k, v in geometry_of(sto).items():
            check(v == want_sm["per_token"][k], f"{what}: streamed {k} equals generate's with the same options")
        check(geometry_of(sto)["curvature_t"] != geo["curvature_t"], f"{what}: the curvature option changes the streamed curvature_t")
        code, _, b_ = s.request("POST", "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 12, "phasemap": {"analysis": opts}})
        nj = json.loads(b_)["phasemap"] if code == 200 else {}
        check(nj.get("summary", {}).get("per_token") == want_sm["per_token"] and geometry_of(nj.get("tokens", [])) == geometry_of(sto),
              f"{what}: non-streaming summary and tokens equal the streamed ones")
        check(nj.get("geometry") == {"layer": want_sm["token_axis"]["layer"], "norm": "raw", "curvature": opts["curvature"], "per_token": True},
              f"{what}: phasemap.geometry states the layer and options (got {nj.get('geometry')})")
    # norm clipped_mad standardises by the whole run's states: no per-token value while streaming
    # (null, the reason stated once in phasemap.geometry); the final summary has the series.
    _, want_mad = generate("Once upon a time", 12, "--norm", "clipped_mad", "--mad-k", "3")
    ev_mad = s.stream({"prompt": "Once upon a time", "max_tokens": 12, "phasemap": {"analysis": {"norm": "clipped_mad", "mad_k": 3}}})[1]
    stm, finm = tokens_of_events(ev_mad)
    check(len(stm) == 12 and all(t[k] is None for t in stm for k in ("delta_t", "curvature_t", "ct_t")),
          "clipped_mad: every streamed token's delta_t, curvature_t, ct_t is null")
    gh = [json.loads(e)["phasemap"]["geometry"] for e in ev_mad if e != "[DONE]" and "geometry" in json.loads(e).get("phasemap", {})]
    check(len(gh) == 1 and gh[0]["per_token"] is False and gh[0]["norm"] == "clipped_mad" and "clipped_mad" in gh[0].get("missing_reason", ""),
          f"clipped_mad: phasemap.geometry (once, in token 0's chunk) says why the per-token values are null (got {gh})")
    smm = finm["phasemap"]["summary"] if finm else {}
    for k in ("summary", "token_axis", "per_token", "options"):
        check(smm.get(k) == want_mad.get(k), f"clipped_mad: final summary section '{k}' equals generate --analyze --norm clipped_mad")
    check(smm.get("per_token", {}).get("ct_t") != ref_summary["per_token"]["ct_t"], "clipped_mad: the series differs from raw's")
    # phasemap.analysis: one 400 naming the field for a wrong type, an unknown key or a value
    # analysis_options refuses; the layer is named once (analysis.layer or metric_layer).
    for a_, needle in (({"bogus": 1}, "phasemap.analysis.bogus"), ({"mad_k": "5"}, "phasemap.analysis.mad_k"),
                       ({"ct_clip": 1}, "phasemap.analysis.ct_clip"), ({"shuffles": -1}, "phasemap.analysis.shuffles"),
                       ({"shuffles": 1.5}, "phasemap.analysis.shuffles"), ({"norm": 3}, "phasemap.analysis.norm"),
                       ({"layer": [1]}, "phasemap.analysis.layer"), ({"layer": "hf:9"}, "phasemap.analysis.layer"),
                       ({"regime_cuts": [1, 2]}, "phasemap.analysis.regime_cuts"), ({"regime_cuts": [3, 2, 1]}, "ascending"),
                       ({"norm": "zscore"}, "norm"), ({"curvature": "bent"}, "curvature"), ({"late_window": 2}, "late_window"),
                       ({"mad_k": 0}, "mad_k"), ({"collapse_top1": 1.5}, "collapse_top1"), ({"shuffles": 10 ** 9}, "shuffles"), (7, "phasemap.analysis")):
        code, _, b_ = s.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": 2, "phasemap": {"analysis": a_}})
        msg = json.loads(b_).get("error", {}).get("message", "") if b_.startswith(b"{") else ""
        check(code == 400 and needle in msg and "phasemap.analysis" in msg, f"phasemap.analysis {a_} → 400 naming {needle} (got {code} {msg!r})")
    code, _, b_ = s.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": 2,
                                                        "phasemap": {"metric_layer": "hf:2", "analysis": {"layer": "hf:3"}}})
    check(code == 400 and b"give the layer once" in b_, f"analysis.layer and metric_layer that differ → 400 (got {code})")
    # phasemap.return_hidden_states: base64 float32 LE per token, equal to generate's NPZ bitwise
    def decode_states(toks, hdr):
        return np.stack([np.frombuffer(base64.b64decode(t["hidden_states"]), dtype="<f4").reshape(hdr["shape"]) for t in toks])
    want = ref["hidden_states"][:, [2, 5, 1], :]  # stories260K: hf:0 … hf:5 captured
    hs_body = {"prompt": "Once upon a time", "max_tokens": 12, "phasemap": {"return_hidden_states": "hf:2,hf:-1,block:0"}}
    hst, _ = tokens_of_events(s.stream(hs_body)[1])
    hdr_ev = [json.loads(e)["phasemap"]["hidden_states"] for e in s.stream(hs_body)[1] if e != "[DONE]" and "hidden_states" in json.loads(e).get("phasemap", {})]
    check(len(hdr_ev) == 1 and hdr_ev[0]["layers"] == ["hf:2", "hf:5", "block:0"] and hdr_ev[0]["shape"] == [3, 64],
          f"streamed hidden-states header stated once with labels and shape (got {hdr_ev})")
    if len(hdr_ev) == 1:
        got = decode_states(hst, hdr_ev[0])
        check(got.shape == want.shape and got.tobytes() == want.tobytes(), "streamed hidden states equal generate's NPZ bitwise")
    code, _, body_ = s.request("POST", "/v1/completions", dict(hs_body))
    nj = json.loads(body_)
    if code == 200:
        got = decode_states(nj["phasemap"]["tokens"], nj["phasemap"]["hidden_states"])
        check(got.tobytes() == want.tobytes(), "non-streaming hidden states equal generate's NPZ bitwise")
    else:
        check(False, f"non-streaming return_hidden_states → 200 (got {code})")
    for spec, what in (("hf:9", "out of range"), ("attn_out:1", "not captured"), ("hf:x", "syntax")):
        code, _, body_ = s.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": 2, "phasemap": {"return_hidden_states": spec}})
        check(code == 400 and b"return_hidden_states" in body_, f"return_hidden_states {spec} ({what}) → 400 naming it (got {code})")
    # --- per-request intervention: the same grammar as generate --intervene, on this request only
    vec = os.path.join(tempfile.mkdtemp(), "v.npy")
    np.save(vec, np.random.default_rng(1).standard_normal(64).astype(np.float32))
    spec = f"add:block:2:{vec}:3"
    iv_ref, _ = generate("Once upon a time", 12, "--intervene", spec)
    res = {}

    def run_iv():
        res["iv"] = s.request("POST", "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 12, "phasemap": {"interventions": [spec]}})

    def run_plain():
        res["plain"] = s.stream({"prompt": "Once upon a time", "max_tokens": 12})

    th = [threading.Thread(target=run_iv), threading.Thread(target=run_plain)]
    [t.start() for t in th]
    [t.join() for t in th]
    iv_toks = json.loads(res["iv"][2])["phasemap"]["tokens"]
    check([t["id"] for t in iv_toks] == list(iv_ref["token_ids"]), "intervention: tokens equal generate --intervene")
    check([t["id"] for t in iv_toks] != list(ref["token_ids"]), "intervention changes the sequence")
    pt, _ = tokens_of_events(res["plain"][1])
    check([t["id"] for t in pt] == list(ref["token_ids"]), "the sequence beside the intervened one is unchanged (tokens)")
    # --- per-request control vector: this sequence only; equals generate --control-vector (llama.cpp's
    # context-wide cvec) in its tokens, while a stream beside it keeps its own
    d = tempfile.mkdtemp()
    for name, lines in (("pos.txt", "happy day\nI love it\nsun is bright\n"), ("neg.txt", "sad day\nI hate it\nrain is cold\n")):
        open(os.path.join(d, name), "w").write(lines)
    cv = os.path.join(d, "cv.gguf")
    subprocess.run([BIN, "steer", "build", "-m", MODEL, "--pos", os.path.join(d, "pos.txt"), "--neg", os.path.join(d, "neg.txt"), "-o", cv, "-q"],
                   check=True, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cv_ref, _ = generate("Once upon a time", 20, "--control-vector", cv + ":0.7")
    plain_ref, _ = generate("The little dog", 20)
    res = {}

    def run_cv():
        res["cv"] = s.request("POST", "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 20,
                                                          "phasemap": {"control_vectors": [cv + ":0.7"]}})

    def run_plain2():
        res["plain"] = s.stream({"prompt": "The little dog", "max_tokens": 20})

    th = [threading.Thread(target=run_cv), threading.Thread(target=run_plain2)]
    [t.start() for t in th]
    [t.join() for t in th]
    cv_toks = [t["id"] for t in json.loads(res["cv"][2])["phasemap"]["tokens"]]
    check(cv_toks == list(cv_ref["token_ids"]), "control vector on one request: tokens equal generate --control-vector")
    check(cv_toks != refs_once, "the control vector changes its sequence")
    pt, _ = tokens_of_events(res["plain"][1])
    check([t["id"] for t in pt] == list(plain_ref["token_ids"]), "the stream beside the control vector is untouched (tokens)")
    # --- per-request monitor: the guard text goes in where generate --monitor puts it
    mon = {"triggers": ["streak:n=3"], "on": "guard", "guard_text": " Then"}
    mj = os.path.join(d, "mon.json")
    mref, _ = generate("Once upon a time", 30, "--monitor", "--trigger", "streak:n=3", "--on", "guard", "--guard-text", " Then", "--monitor-json", mj)
    guard_t = [e["t"] for e in json.load(open(mj))["events"] if e["action"] == "guard"]
    code, ev = s.stream({"prompt": "Once upon a time", "max_tokens": 30, "phasemap": {"monitor": mon}})
    mt, fin = tokens_of_events(ev)
    check([t["id"] for t in mt] == list(mref["token_ids"]), "monitor: served tokens equal generate --monitor's")
    check([t["position"] for t in mt] == list(mref["positions"]), "monitor: positions (guard tokens in the context) equal generate's")
    ins = fin["phasemap"].get("insertions", []) if fin else []
    check(guard_t and [i["after_t"] for i in ins] == guard_t, f"monitor: guard inserted after t={guard_t} as in generate (got {ins})")
    # --- 400s: one clear message each, and the server keeps serving
    bad = [b"{not json", json.dumps([1, 2]), json.dumps({"prompt": 3}), json.dumps({"prompt": "x", "max_tokens": "many"}),
           json.dumps({"prompt": "x", "bogus": 1}), json.dumps({"prompt": "x", "phasemap": {"nope": 1}}),
           json.dumps({"prompt": "x", "phasemap": {"metric_layer": "hf:99"}}), json.dumps({"prompt": "", "max_tokens": 3}),
           json.dumps({"prompt": "x", "max_tokens": 100000}), json.dumps({"prompt": "x", "phasemap": {"interventions": ["add:block:99:v.npy"]}}),
           json.dumps({"prompt": "x", "temperature": -1}), json.dumps({"prompt": " dog" * 3000, "max_tokens": 2})]
    for b in bad:
        code, _, body_ = s.request("POST", "/v1/completions", b)
        msg = json.loads(body_).get("error", {}).get("message", "") if body_.startswith(b"{") else ""
        check(code == 400 and msg, f"malformed request {b[:40]!r} → 400 with a message (got {code} {body_[:80]!r})")
    code, _, body_ = s.request("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})
    check(code == 400 and b"chat template" in body_, "chat on a model without a template → 400 naming it")
    code, _, _ = s.request("POST", "/v1/completions", "x" * (2 << 20))
    check(code == 413, f"body over the size limit → 413 (got {code})")
    # --- load: 32 concurrent streaming clients, 200 requests, 20 malformed interleaved, one killed
    prompts = ["Once upon a time", "The little dog", "Tom and Sue went to", "One day, a big bird", "Lily had a red ball",
               "The sun was hot", "A cat sat", "Ben liked to"]
    refs = {}
    for i, p in enumerate(prompts):
        n = 6 + 3 * i
        c, _, b_ = s.request("POST", "/v1/completions", {"prompt": p, "max_tokens": n, "phasemap": {"analysis": False}})
        refs[p] = [t["id"] for t in json.loads(b_)["phasemap"]["tokens"]]
    jobs = [(prompts[i % len(prompts)], 6 + 3 * (i % len(prompts))) for i in range(200)]
    lock = threading.Lock()
    errors, mixed, bad_ok, done = [], [], [], [0]

    def worker(w):
        while True:
            with lock:
                if not jobs:
                    return
                p, n = jobs.pop()
                k = done[0]
                done[0] += 1
            if k % 10 == 5:  # a malformed request interleaved
                c, _, _ = s.request("POST", "/v1/completions", json.dumps({"prompt": p, "max_tokens": -1}))
                with lock:
                    bad_ok.append(c == 400)
            code, ev = s.stream({"prompt": p, "max_tokens": n, "phasemap": {"analysis": False}})
            if code != 200:
                with lock:
                    errors.append(code)
                continue
            tk, fin = tokens_of_events(ev)
            if [t["id"] for t in tk] != refs[p] or fin is None:
                with lock:
                    mixed.append(p)

    def killed_client():
        sock = socket.create_connection(("127.0.0.1", s.port))
        b_ = json.dumps({"prompt": "Once upon a time", "max_tokens": 120, "stream": True})
        sock.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(b_)}\r\n\r\n{b_}".encode())
        sock.recv(2000)
        sock.close()

    tl = time.time()
    ths = [threading.Thread(target=worker, args=(w,)) for w in range(32)] + [threading.Thread(target=killed_client)]
    [t.start() for t in ths]
    [t.join(timeout=120) for t in ths]
    check(not any(t.is_alive() for t in ths), "load test finished (no client stalled)")
    check(not errors, f"load: 0 errors (got {len(errors)}: {errors[:5]})")
    check(not mixed, f"load: every response equals its solo run ({len(mixed)} differ)")
    check(len(bad_ok) == 20 and all(bad_ok), f"load: 20 malformed requests got 400 ({sum(bad_ok)}/{len(bad_ok)})")
    print(f"load test: 200 streams + 20 malformed, 32 clients, {time.time() - tl:.1f} s", flush=True)
    time.sleep(0.5)
    met = curl(f"http://127.0.0.1:{s.port}/metrics")
    check("phasemap_active_sequences 0" in met, "metrics: no sequence left active (the killed client's was freed)")
    check(re.search(r"^phasemap_tokens_generated_total \d+", met, re.M) is not None, "metrics: tokens counter")
    check(re.search(r"^phasemap_requests_cancelled_total [1-9]", met, re.M) is not None, "metrics: the killed client's sequence was cancelled")
    print("metrics after the load test:", " ".join(l for l in met.splitlines() if l and not l.startswith("#")), flush=True)
    rc = s.stop()
    check(rc == 0, f"SIGTERM: the server stops cleanly (rc {rc})")
    # --db: every served run stored like a panel run; `phasemap audit` reads the DB. Served runs:
    # 2 (curl) + 1 (metric layer hf:2) + 5 (analysis options) + 3 (hidden states) + 2 (intervention pair) + 2 (control-vector pair) + 1 (monitor)
    # + 8 (references) + 200 (load) + 1 (killed client, cancelled).
    aj = os.path.join(dbdir, "audit.json")
    subprocess.run([BIN, "audit", dbpath, "--json", aj], check=True, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nruns = json.load(open(aj))["panel"]["runs"]
    check(nruns == 225, f"--db: one runs row per served run (225), got {nruns}")
    # The clipped_mad request's row is stored under its norm (the audit compares it with the raw rows).
    modes = [(g["mode_a"], g["mode_b"]) for g in json.load(open(aj))["sections"]["normalisation"].get("agreement", [])]
    check(("clipped_mad", "raw") in modes, f"--db: the run served with norm clipped_mad is stored with that norm (audit modes {modes})")

    # --- queue bound: 429 with Retry-After
    q = Server("--parallel", "1", "--queue", "1")
    codes = []

    def hit():
        c, h, _ = q.request("POST", "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 120, "phasemap": {"analysis": False}})
        with lock:
            codes.append((c, h.get("Retry-After")))

    ths = [threading.Thread(target=hit) for _ in range(8)]
    [t.start() for t in ths]
    [t.join() for t in ths]
    check(any(c == 429 and ra for c, ra in codes), f"a full queue answers 429 with Retry-After ({codes})")
    check(any(c == 200 for c, _ in codes), "the queued requests are served")
    q.stop()

    # --- --output-stats graph: the statistics come from ggml ops in the graph; they equal generate
    # --output-stats graph's bitwise (same path), the host reference (generate's default on the CPU)
    # within 1e-6 relative, and the greedy tokens are the same
    g = Server("--parallel", "2", "--output-stats", "graph")
    gref, _ = generate("Once upon a time", 12, "--output-stats", "graph")
    _, gev = g.stream({"prompt": "Once upon a time", "max_tokens": 12, "temperature": 0})
    gt, _ = tokens_of_events(gev)
    same_as_generate(gt, gref, "serve --output-stats graph")
    check([t["id"] for t in gt] == list(ref["token_ids"]), "serve --output-stats graph: greedy tokens equal the host path's")
    for k in ("entropy", "top1", "margin", "surprisal"):
        close = all(abs(float(t[k]) - float(v)) <= 1e-6 * max(1.0, abs(float(v))) for t, v in zip(gt, ref[k]))
        check(len(gt) == 12 and close, f"serve --output-stats graph: {k} within 1e-6 of the host reference")
    g.stop()
    bad = subprocess.run([BIN, "serve", "-m", MODEL, "--port", "0", "--output-stats", "gpu"], capture_output=True, text=True, env=ENV, timeout=30)
    check(bad.returncode == 2 and "--output-stats" in bad.stderr, f"serve --output-stats gpu: usage error naming the flag ({bad.returncode}, {bad.stderr!r})")

    # --- API key: 401 without it or with a wrong one
    a = Server("--api-key", "s3cret", "--max-hidden-states", "4096")
    # 4096 bytes allow 16 tokens x 1 layer x 64 x 4 (= 4096) and refuse 17
    auth = {"Authorization": "Bearer s3cret"}
    c5, _, _ = a.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": 16, "phasemap": {"return_hidden_states": "hf:1"}}, auth)
    c6, _, b6 = a.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": 17, "phasemap": {"return_hidden_states": "hf:1"}}, auth)
    check((c5, c6) == (200, 400) and b"--max-hidden-states" in b6, f"--max-hidden-states: at the limit 200, beyond it 400 naming it (got {c5}, {c6})")
    c1, _, _ = a.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": 2})
    c2, _, _ = a.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": 2}, {"Authorization": "Bearer s3cre"})
    c3, _, _ = a.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": 2}, {"Authorization": "Bearer s3cret"})
    c4, _, _ = a.request("GET", "/health")
    check((c1, c2, c3, c4) == (401, 401, 200, 200), f"--api-key: 401, 401, 200, health 200 (got {c1}, {c2}, {c3}, {c4})")
    a.stop()
    print(f"serve tests: {time.time() - t0:.1f} s", flush=True)
finally:
    for sv in servers:
        if sv.p.poll() is None:
            sv.p.kill()
            sv.p.wait()

if failures:
    print(f"{len(failures)} check(s) failed")
    sys.exit(1)
print("all serve checks passed")
