#!/usr/bin/python3
"""bench_serve: `phasemap serve` under C concurrent streaming clients against `panel run
--parallel C` on the same model, prompts and token budget (greedy), and per-token latency with
and without the `phasemap` extension.

  bench_serve.py PHASEMAP [MODEL] [--tokens T] [--clients C] [--reps R] [--copies K] [--threads N]
                 [--baseline PHASEMAP2]

One repetition = three timed passes, in an order that rotates from one repetition to the next:
  serve+ext  the K × 72 prompts of the builtin `stories` panel (K copies, default 3), T tokens each
             (default 48), through `phasemap serve --parallel C --db` by C streaming clients (wall
             time from the first request to the last [DONE]); every chunk carries the extension;
  serve-ext  the same with phasemap.extension false (plain OpenAI chunks, no summary);
  panel      `phasemap panel run --parallel C --db` on a prompt file of the same K × 72 prompts,
             budget and greedy decoding (wall time of the command).
All three store every run in a DB and generate the same tokens (greedy, the same engine loop).
Per repetition: serve ÷ panel = tokens/s of serve+ext ÷ tokens/s of panel (target ≥ 0.85), and the
per-token latency (the gaps between consecutive token chunks as the clients receive them) p50 and
p99 of serve+ext and serve-ext, overhead = with ÷ without − 1 (target ≤ 3 %). Printed: each
repetition's figures, then the median and the range over the repetitions (default 5).
The clients only split the byte stream into SSE events and look for `"finish_reason":null`; they
do not parse each chunk's JSON (the clients run on the same machine, and their parsing would be
charged to the server). --baseline PHASEMAP2 adds a fourth pass, serve+ext of another binary (e.g.
the previous build), interleaved the same way: its tokens/s ÷ this one's.
Also printed: CPU seconds per 1000 tokens of the server process, of the clients and of the panel
command (less sensitive than wall time to other load on a shared machine).
The model defaults to ../shared/models/stories260K.gguf. Prints `key: value` lines.
"""
import csv
import http.client
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time

args = sys.argv[1:]
PM = os.path.abspath(args.pop(0))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Absolute: the panel manifest written below lives in a temporary folder, and a manifest resolves
# paths relative to itself.
MODEL = os.path.abspath(args.pop(0) if args and not args[0].startswith("--") else os.path.join(ROOT, "..", "shared", "models", "stories260K.gguf"))
opt = {"--tokens": 48, "--clients": 16, "--reps": 5, "--copies": 3, "--threads": int(os.environ.get("PHASEMAP_THREADS", "2")), "--baseline": ""}
while args:
    k = args.pop(0)
    if k not in opt:
        sys.exit(f"bench_serve: unknown option {k}")
    v = args.pop(0)
    opt[k] = v if k == "--baseline" else int(v)
T, C, R, K, TH = opt["--tokens"], opt["--clients"], opt["--reps"], opt["--copies"], opt["--threads"]
BASE = os.path.abspath(opt["--baseline"]) if opt["--baseline"] else None
with open(os.path.join(ROOT, "src", "panel", "panels", "stories.csv")) as f:
    ROWS = [(r["category"], r["prompt"]) for r in csv.DictReader(f)]
# K copies, each its own category (so that the panel keeps every row as its own run).
PROMPTS = [(f"c{k}-{cat}", p) for k in range(K) for cat, p in ROWS]
ENV = dict(os.environ, PHASEMAP_THREADS=str(TH))


def cpu_of(pid):
    """CPU seconds (user + system) of a running process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        v = f.read().rsplit(")", 1)[1].split()
    return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")


def serve_run(binary, extension, dbdir):
    p = subprocess.Popen([binary, "serve", "-m", MODEL, "--port", "0", "--parallel", str(C), "--queue", "1000", "--db",
                          os.path.join(dbdir, f"serve-{time.time_ns()}.duckdb")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         env=ENV, text=True)
    try:
        port = int(re.search(r":(\d+) ", p.stdout.readline()).group(1))
        jobs = [pr for _, pr in reversed(PROMPTS)]
        lock = threading.Lock()
        gaps, tokens, failed = [], [0], [0]

        def client():
            while True:
                with lock:
                    if not jobs:
                        return
                    prompt = jobs.pop()
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
                body = {"prompt": prompt, "max_tokens": T, "stream": True}
                if not extension:
                    body["phasemap"] = {"extension": False}
                c.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
                r = c.getresponse()
                buf, last, mine, n, done = b"", None, [], 0, False
                while True:
                    chunk = r.read1(65536)
                    if not chunk:
                        break
                    buf += chunk
                    while b"\n\n" in buf:
                        ev, buf = buf.split(b"\n\n", 1)
                        if ev == b"data: [DONE]":
                            done = True
                        elif b'"finish_reason":null' in ev:
                            now = time.perf_counter()
                            if last is not None:
                                mine.append(now - last)
                            last = now
                            n += 1
                c.close()
                with lock:
                    gaps.extend(mine)
                    tokens[0] += n
                    failed[0] += r.status != 200 or not done

        t0, c0, s0 = time.perf_counter(), time.process_time(), cpu_of(p.pid)
        th = [threading.Thread(target=client) for _ in range(C)]
        [t.start() for t in th]
        [t.join() for t in th]
        wall = time.perf_counter() - t0
        client_cpu = time.process_time() - c0
        if failed[0]:
            sys.exit(f"bench_serve: {failed[0]} streams failed")
        # The server's CPU over the pass until it exited (SIGTERM: it stores what is left first,
        # as the panel command does before it exits).
        p.terminate()
        _, _, ru = os.wait4(p.pid, 0)
        p.returncode = 0
        return wall, tokens[0], gaps, (ru.ru_utime + ru.ru_stime - s0, client_cpu)
    finally:
        if p.returncode is None:
            p.terminate()
            p.wait()


def panel_run(dbdir):
    man = os.path.join(dbdir, f"bench-{time.time_ns()}.toml")
    with open(man + ".csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["category", "prompt"])
        w.writerows(PROMPTS)
    with open(man, "w") as f:
        f.write(f'name = "bench-serve"\n[generation]\ntemperatures = [0.0]\nn_predict = [{T}]\nseeds = [1]\nlayers = "hf:all"\n'
                f'[metrics]\nnorms = ["raw"]\n[[models]]\nlabel = "m"\npath = "{MODEL}"\n[[prompts]]\nfile = "{man}.csv"\n')
    t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([PM, "panel", "run", man, "--db", man + ".duckdb", "--parallel", str(C)], check=True, env=ENV,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
    m = re.search(r"(\d+) runs written, \d+ skipped, (\d+) tokens", out)
    if not m or int(m.group(1)) != len(PROMPTS):
        sys.exit(f"bench_serve: the panel did not write {len(PROMPTS)} runs: {out[-300:]}")
    return wall, int(m.group(2)), cpu


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * (len(xs) - 1) + 0.5))] if xs else float("nan")


def spread(name, xs, fmt="{:.3f}"):
    print(f"{name}: median {fmt.format(statistics.median(xs))}  range {fmt.format(min(xs))} .. {fmt.format(max(xs))}  (n {len(xs)})")


load0 = os.getloadavg()[0]
t_start = time.time()
per_rep = []
with tempfile.TemporaryDirectory() as d:
    passes = ["with", "without", "panel"] + (["baseline"] if BASE else [])
    for rep in range(R):
        k = rep % len(passes)
        order = passes[k:] + passes[:k]
        got = {}
        for o in order:
            if o == "panel":
                got[o] = panel_run(d)
            else:
                got[o] = serve_run(BASE if o == "baseline" else PM, o != "without", d)
        (sw, sn, sg, scpu), (ow, on, og, _), (pw, pn, pcpu) = got["with"], got["without"], got["panel"]
        if not (sn == on == pn):
            sys.exit(f"bench_serve: the passes generated different token counts (serve {sn}, serve without extension {on}, panel {pn})")
        f = {"serve_tps": sn / sw, "serve_noext_tps": on / ow, "panel_tps": pn / pw, "p50_with": pct(sg, 0.5), "p50_without": pct(og, 0.5),
             "p99_with": pct(sg, 0.99), "p99_without": pct(og, 0.99)}
        f["serve_vs_panel"] = f["serve_tps"] / f["panel_tps"]
        # CPU seconds per 1000 tokens: less sensitive to other load on the machine than wall time.
        f["serve_cpu"], f["client_cpu"], f["panel_cpu"] = 1e3 * scpu[0] / sn, 1e3 * scpu[1] / sn, 1e3 * pcpu / pn
        f["cpu_panel_vs_serve"] = f["panel_cpu"] / f["serve_cpu"]
        f["overhead_p50"] = f["p50_with"] / f["p50_without"] - 1
        f["overhead_p99"] = f["p99_with"] / f["p99_without"] - 1
        if BASE:
            bw, bn, _, bcpu = got["baseline"]
            f["vs_baseline"] = f["serve_tps"] / (bn / bw)
            f["baseline_cpu"] = 1e3 * bcpu[0] / bn
        per_rep.append(f)
        print(f"rep {rep} ({' '.join(order)}): serve {f['serve_tps']:.1f} tok/s, panel {f['panel_tps']:.1f} tok/s, serve/panel {f['serve_vs_panel']:.3f}; "
              f"p50 {1e3 * f['p50_with']:.3f}/{1e3 * f['p50_without']:.3f} ms ({100 * f['overhead_p50']:+.1f} %), "
              f"p99 {1e3 * f['p99_with']:.3f}/{1e3 * f['p99_without']:.3f} ms ({100 * f['overhead_p99']:+.1f} %)"
              + f"; CPU s/1000 tokens: server {f['serve_cpu']:.3f} clients {f['client_cpu']:.3f} panel {f['panel_cpu']:.3f}"
              + (f"; vs baseline {f['vs_baseline']:.3f} (baseline server CPU {f['baseline_cpu']:.3f})" if BASE else ""), flush=True)
print(f"model: {os.path.basename(MODEL)}  requests per pass: {len(PROMPTS)} ({K} x 72)  tokens per pass: {sn}  max_tokens: {T}  clients: {C}  "
      f"reps: {R}  threads: {TH}  load average: {load0:.1f} -> {os.getloadavg()[0]:.1f}  elapsed: {time.time() - t_start:.0f} s")
col = lambda k: [f[k] for f in per_rep]
spread("serve_tokens_per_s", col("serve_tps"), "{:.1f}")
spread("serve_noext_tokens_per_s", col("serve_noext_tps"), "{:.1f}")
spread("panel_tokens_per_s", col("panel_tps"), "{:.1f}")
spread("serve_vs_panel", col("serve_vs_panel"))
spread("latency_with_extension_p50_ms", [1e3 * x for x in col("p50_with")])
spread("latency_without_extension_p50_ms", [1e3 * x for x in col("p50_without")])
spread("latency_with_extension_p99_ms", [1e3 * x for x in col("p99_with")])
spread("latency_without_extension_p99_ms", [1e3 * x for x in col("p99_without")])
spread("latency_overhead_p50", col("overhead_p50"), "{:+.4f}")
spread("latency_overhead_p99", col("overhead_p99"), "{:+.4f}")
spread("serve_cpu_s_per_1000_tokens", col("serve_cpu"))
spread("client_cpu_s_per_1000_tokens", col("client_cpu"))
spread("panel_cpu_s_per_1000_tokens", col("panel_cpu"))
spread("cpu_panel_vs_serve", col("cpu_panel_vs_serve"))
if BASE:
    spread("serve_vs_baseline", col("vs_baseline"))
    spread("baseline_cpu_s_per_1000_tokens", col("baseline_cpu"))
