#!/usr/bin/python3
"""Python package overhead (bench/run.sh; BENCHMARKS.md "Python package").

    PYTHONPATH=BUILD/python bench/bench_python.py BUILD/phasemap MODEL.gguf [--tokens 32] [--threads 2] [--reps 3]

1. `Model.generate(layers="hf:all")` ÷ `phasemap generate --layers hf:all` (same model, prompt,
   greedy settings, threads): decode tokens/s of each, measured as (T − 1) / (time at n = T −
   time at n = 1), so that process start, model load and prefill (the CLI's, the interpreter's)
   cancel out of both. Target ≥ 0.97.
2. One hooked layer ÷ none: `generate(hooks={"block:MID": no-op})` ÷ `generate()`, tokens/s of
   whole calls (in-process, the model loaded once).

Modes alternate within each repetition; medians are printed, with the ratios on the last lines.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

import phasemap

PROMPT = "The history of the city begins"


def cli_time(pm, model, n, threads):
    t0 = time.perf_counter()
    subprocess.run([pm, "generate", "-m", model, "-p", PROMPT, "-n", str(n), "--layers", "hf:all", "-t", str(threads), "-q"],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def py_time(m, n, hooks=None):
    t0 = time.perf_counter()
    runs = m.generate(PROMPT, n=n, layers="hf:all", hooks=hooks)
    dt = time.perf_counter() - t0
    assert len(runs[0]) == n, "the model stopped early: pick a prompt that runs the whole budget"
    return dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("phasemap")
    ap.add_argument("model")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    m = phasemap.Model(a.model, threads=a.threads)
    T = a.tokens
    mid = m.info["n_layer"] // 2
    calls = [0]

    def noop(step, state):
        calls[0] += 1

    py_generate = lambda n: py_time(m, n)
    py_generate(2)  # warm-up
    cli_T, cli_1, py_T, py_1, none, hooked = [], [], [], [], [], []
    for _ in range(a.reps):
        cli_T.append(cli_time(a.phasemap, a.model, T, a.threads))
        cli_1.append(cli_time(a.phasemap, a.model, 1, a.threads))
        py_T.append(py_generate(T))
        py_1.append(py_generate(1))
        none.append(py_time(m, T))
        hooked.append(py_time(m, T, {f"block:{mid}": noop}))
    assert calls[0] == a.reps * T
    med = statistics.median
    cli_tps = (T - 1) / (med(cli_T) - med(cli_1))
    py_tps = (T - 1) / (med(py_T) - med(py_1))
    none_tps, hook_tps = T / med(none), T / med(hooked)
    info = m.info
    print(f"model {os.path.basename(a.model)} ({info['architecture']}, {info['n_layer']} blocks, n_embd {info['n_embd']}), "
          f"{T} tokens, {a.threads} threads, {a.reps} reps, layers hf:all")
    print(f"cli generate      n={T}: {med(cli_T):.3f} s  n=1: {med(cli_1):.3f} s  decode {cli_tps:9.2f} tok/s")
    print(f"python generate   n={T}: {med(py_T):.3f} s  n=1: {med(py_1):.3f} s  decode {py_tps:9.2f} tok/s")
    print(f"python generate   no hook: {none_tps:9.2f} tok/s   one hooked layer (block:{mid}, no-op): {hook_tps:9.2f} tok/s")
    print(f"ratio python_vs_cli {py_tps / cli_tps:.4f}")
    print(f"ratio hook_vs_none {hook_tps / none_tps:.4f}")


if __name__ == "__main__":
    sys.exit(main())
