#!/usr/bin/python3
"""bench_serve: `phasemap serve` under 16 concurrent streaming clients against `panel run
--parallel 16` on the same model, prompts and token budget (greedy), and per-token latency with
and without the `phasemap` extension.

  bench_serve.py PHASEMAP [MODEL] [--tokens T] [--clients C] [--reps R]

1. Aggregate tokens/s: the 72 prompts of the builtin `stories` panel, T tokens each (default 48),
   through `phasemap serve --parallel C --db` by C streaming clients (wall time from the first
   request to the last [DONE]) ÷ `phasemap panel run --parallel C --db` on a manifest of the same
   prompts, budget and greedy decoding (wall time of the command). Both store every run in a DB
   and generate the same tokens (greedy, the same engine loop). Target ≥ 0.85.
2. Per-token latency: the gaps between consecutive token chunks as the clients receive them, p50
   and p99, with the extension (per-token `phasemap` objects, the run summary at the end) and
   without (phasemap.extension false); overhead = with ÷ without − 1. Target ≤ 3 %.
R repetitions (default 2) alternate the order of each comparison; rates are totals over them.
The model defaults to ../shared/models/stories260K.gguf. Prints one `key: value` line per figure.
"""
import csv
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

args = sys.argv[1:]
PM = os.path.abspath(args.pop(0))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.abspath(args.pop(0) if args and not args[0].startswith("--") else os.path.join(ROOT, "..", "shared", "models", "stories260K.gguf"))
# Absolute: the panel manifest written below lives in a temporary folder, and a manifest resolves
# model paths relative to itself.
opt = {"--tokens": 48, "--clients": 16, "--reps": 2}
while args:
    k = args.pop(0)
    opt[k] = int(args.pop(0))
T, C, R = opt["--tokens"], opt["--clients"], opt["--reps"]
with open(os.path.join(ROOT, "src", "panel", "panels", "stories.csv")) as f:
    PROMPTS = [r["prompt"] for r in csv.DictReader(f)]
ENV = dict(os.environ)
ENV.setdefault("PHASEMAP_THREADS", "2")


def serve_run(extension, dbdir):
    p = subprocess.Popen([PM, "serve", "-m", MODEL, "--port", "0", "--parallel", str(C), "--queue", "1000", "--db",
                          os.path.join(dbdir, f"serve-{time.time_ns()}.duckdb")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         env=ENV, text=True)
    try:
        port = int(re.search(r":(\d+) ", p.stdout.readline()).group(1))
        jobs = list(PROMPTS)
        lock = threading.Lock()
        gaps, tokens = [], [0]

        def client():
            while True:
                with lock:
                    if not jobs:
                        return
                    prompt = jobs.pop()
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
                body = {"prompt": prompt, "max_tokens": T, "stream": True}
                if not extension:
                    body["phasemap"] = {"extension": False}
                c.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
                r = c.getresponse()
                buf, last, mine, n = b"", None, [], 0
                while True:
                    chunk = r.read1(65536)
                    if not chunk:
                        break
                    buf += chunk
                    while b"\n\n" in buf:
                        ev, buf = buf.split(b"\n\n", 1)
                        if ev == b"data: [DONE]":
                            continue
                        j = json.loads(ev[6:])
                        if j["choices"][0]["finish_reason"] is None:
                            now = time.perf_counter()
                            if last is not None:
                                mine.append(now - last)
                            last = now
                            n += 1
                c.close()
                with lock:
                    gaps.extend(mine)
                    tokens[0] += n

        t0 = time.perf_counter()
        th = [threading.Thread(target=client) for _ in range(C)]
        [t.start() for t in th]
        [t.join() for t in th]
        wall = time.perf_counter() - t0
        return wall, tokens[0], gaps
    finally:
        p.terminate()
        p.wait()


def panel_run(dbdir):
    man = os.path.join(dbdir, f"bench-{time.time_ns()}.toml")
    with open(man, "w") as f:
        f.write(f'name = "bench-serve"\n[generation]\ntemperatures = [0.0]\nn_predict = [{T}]\nseeds = [1]\nlayers = "hf:all"\n'
                f'[metrics]\nnorms = ["raw"]\n[[models]]\nlabel = "m"\npath = "{MODEL}"\n[[prompts]]\nbuiltin = "stories"\n')
    t0 = time.perf_counter()
    subprocess.run([PM, "panel", "run", man, "--db", man + ".duckdb", "--parallel", str(C), "-q"], check=True, env=ENV,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * (len(xs) - 1) + 0.5))] if xs else float("nan")


with tempfile.TemporaryDirectory() as d:
    s_wall = p_wall = 0.0
    s_tok = 0
    with_g, without_g = [], []
    for rep in range(R):
        order = [0, 1] if rep % 2 == 0 else [1, 0]
        for o in order:
            if o == 0:
                w, n, g = serve_run(True, d)
                s_wall += w
                s_tok += n
                with_g += g
            else:
                p_wall += panel_run(d)
        for o in order:
            if o == 0:
                without_g += serve_run(False, d)[2]
            else:
                with_g += serve_run(True, d)[2]
    print(f"model: {os.path.basename(MODEL)}  prompts: {len(PROMPTS)}  tokens: {T}  clients: {C}  reps: {R}  threads: {ENV['PHASEMAP_THREADS']}")
    serve_rate = s_tok / s_wall
    panel_rate = s_tok / p_wall  # the same greedy tokens
    print(f"serve_tokens_per_s: {serve_rate:.1f}")
    print(f"panel_tokens_per_s: {panel_rate:.1f}")
    print(f"serve_vs_panel: {serve_rate / panel_rate:.3f}")
    for name, g in (("with_extension", with_g), ("without_extension", without_g)):
        print(f"latency_{name}_p50_ms: {1e3 * pct(g, 0.5):.3f}")
        print(f"latency_{name}_p99_ms: {1e3 * pct(g, 0.99):.3f}")
    print(f"latency_overhead_p50: {pct(with_g, 0.5) / pct(without_g, 0.5) - 1:.4f}")
    print(f"latency_overhead_p99: {pct(with_g, 0.99) / pct(without_g, 0.99) - 1:.4f}")
