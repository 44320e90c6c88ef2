#!/usr/bin/python3
"""Every writing verb, interrupted (issue 17, class 4): nothing phasemap writes may be left
half-written under its final name, and no temporary may be left behind.

For each writer (a verb and the option that names its output file) three runs, each writing into
its own empty folder:

  * full disk: the process runs with RLIMIT_FSIZE = 256 bytes (writes past it fail with EFBIG, the
    way a full disk fails them; phasemap ignores SIGXFSZ). Expected: exit 1, one line
    "phasemap: error: ...", the folder empty afterwards;
  * SIGINT and SIGTERM: PHASEMAP_TEST_COMMIT_DELAY_MS holds the complete temporary file before its
    rename; once the temporary (".<name>.tmp-XXXXXX/...") is seen in the folder the signal is sent.
    Expected: the process ends by that signal, the folder empty afterwards.

A control run without limits must write the output (so a writer that writes nothing cannot pass).

usage: writers.py --phasemap BIN [--source-dir DIR] [-k SUBSTRING]
"""
import argparse
import concurrent.futures
import glob
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def shared_models(src):
    env = os.environ.get("PHASEMAP_SHARED")
    return os.path.join(env, "models") if env else os.path.normpath(os.path.join(src, "..", "shared", "models"))


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, timeout=300, env=dict(os.environ, LC_ALL="C"), **kw)


def fixtures(pm, model, d):
    """Inputs the writers read: prompts, a run file, a results DB, a manifest, a labelled CSV."""
    def w(name, text):
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    w("p.txt", "Once upon a time\nThe dog\n")
    w("pos.txt", "happy day\nglad song\n")
    w("neg.txt", "sad day\ngrim song\n")
    w("d.csv", "prompt,answer\nOnce upon a,time\nThe dog,ran\n")
    w("m.toml", f'name = "w"\n[[models]]\nlabel = "s"\npath = "{model}"\n[[prompts]]\nbuiltin = "stories"\nlimit = 1\n'
                '[generation]\nn_predict = [4]\n')
    for argv in ([pm, "generate", "-m", model, "-p", "Once", "-n", "6", "-q", "-o", os.path.join(d, "run.npz")],
                 [pm, "panel", "run", os.path.join(d, "m.toml"), "--db", os.path.join(d, "r.duckdb"), "-q"]):
        r = run(argv)
        if r.returncode != 0:
            raise SystemExit(f"fixture failed: {' '.join(argv)}\n{r.stderr.decode(errors='replace')}")


def writers(pm, model, d):
    """name -> argv builder given the output path."""
    g = [pm, "generate", "-m", model, "-p", "Once", "-n", "6", "-q"]
    f = lambda n: os.path.join(d, n)
    return {
        "generate-o": lambda o: g + ["-o", o],
        "generate-json": lambda o: g + ["--analyze", "--json", o],
        "generate-monitor-json": lambda o: g + ["--monitor", "--monitor-json", o],
        "analyze-json": lambda o: [pm, "analyze", f("run.npz"), "-q", "--json", o],
        "report-o": lambda o: [pm, "report", f("r.duckdb"), "-q", "-o", o],
        "audit-json": lambda o: [pm, "audit", f("r.duckdb"), "--no-store", "-q", "--json", o],
        "replicate-o": lambda o: [pm, "replicate", "-m", model, "-p", "Once", "-n", "4", "-q", "-o", o],
        "control-audit-o": lambda o: [pm, "control-audit", "-m", model, "--prompts", f("p.txt"), "--intervene", "scale:block:1:0.5",
                                      "-n", "4", "--bootstrap", "10", "-q", "-o", o],
        "monitor-eval-o": lambda o: [pm, "monitor-eval", "-m", model, "--data", f("d.csv"), "-n", "4", "--bootstrap", "10", "-q", "-o", o],
        "steer-build-o": lambda o: [pm, "steer", "build", "-m", model, "--pos", f("pos.txt"), "--neg", f("neg.txt"), "-q", "-o", o],
        "make-model-lora-o": lambda o: [pm, "make-model", "--lora-for", model, "--rank", "2", "-o", o],
        "make-model-arch-o": lambda o: [pm, "make-model", "--arch", "llama", "-o", o],
        "quantize": lambda o: [pm, "quantize", model, o, "--type", "q8_0", "-q"],
        "panel-slurm-o": lambda o: [pm, "panel", "slurm", f("m.toml"), "--out-dir", os.path.dirname(o) + "-logs", "-o", o],
    }


def check(name, build, base):
    out_dir = tempfile.mkdtemp(prefix=f"{name}-", dir=base)
    problems = []

    def fresh():
        for n in os.listdir(out_dir):
            p = os.path.join(out_dir, n)
            shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
        return os.path.join(out_dir, "out.file")

    # control: the writer writes its file
    out = fresh()
    r = run(build(out))
    if r.returncode != 0 or not os.path.isfile(out) or os.path.getsize(out) <= 256:
        return name, [f"control run did not write more than 256 bytes (exit {r.returncode}): {r.stderr.decode(errors='replace')[:300]}"]
    # full disk
    out = fresh()
    lim = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (256, 256))
    r = run(build(out), preexec_fn=lim)
    err = r.stderr.decode(errors="replace")
    lines = [l for l in err.split("\n") if l.strip()]
    if r.returncode != 1:
        problems.append(f"full disk: exit {r.returncode}, expected 1")
    if len(lines) != 1 or not lines[0].startswith("phasemap: error:"):
        problems.append(f"full disk: expected one 'phasemap: error:' line, got {err.strip()[:300]!r}")
    if os.listdir(out_dir):
        problems.append(f"full disk: left {os.listdir(out_dir)}")
    # signals before the commit
    for sig in (signal.SIGINT, signal.SIGTERM):
        out = fresh()
        p = subprocess.Popen(build(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env=dict(os.environ, LC_ALL="C", PHASEMAP_TEST_COMMIT_DELAY_MS="4000"))
        seen = False
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and p.poll() is None:
            if any(os.path.isfile(t) and os.path.getsize(t) > 0 for t in glob.glob(os.path.join(out_dir, ".*.tmp-*", "*"))):
                seen = True
                break
            time.sleep(0.01)
        if seen:
            p.send_signal(sig)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            problems.append(f"{sig.name}: did not end within 60 s")
        if not seen:
            problems.append(f"{sig.name}: never saw the temporary file (exit {p.returncode})")
        elif p.returncode != -sig:
            problems.append(f"{sig.name}: ended with status {p.returncode}, expected the signal")
        if os.listdir(out_dir):
            problems.append(f"{sig.name}: left {os.listdir(out_dir)}")
    return name, problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--phasemap", required=True)
    ap.add_argument("--source-dir", default=os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..")))
    ap.add_argument("-k", default="")
    args = ap.parse_args()
    pm = os.path.abspath(args.phasemap)
    model = os.path.join(shared_models(os.path.abspath(args.source_dir)), "stories260K.gguf")
    if not os.path.exists(model):
        print("writers: stories260K.gguf not present")
        return 1
    base = tempfile.mkdtemp(prefix="pm-writers-")
    try:
        d = os.path.join(base, "in")
        os.mkdir(d)
        fixtures(pm, model, d)
        ws = {k: v for k, v in writers(pm, model, d).items() if args.k in k}
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(3, os.cpu_count() or 1))) as pool:
            results = list(pool.map(lambda kv: check(kv[0], kv[1], base), ws.items()))
        failed = 0
        for name, problems in results:
            print(f"{'FAIL' if problems else 'ok  '} {name}" + "".join(f"\n      {p}" for p in problems))
            failed += bool(problems)
        print(f"writers: {len(results) - failed} ok, {failed} failed of {len(results)} writers (full disk, SIGINT, SIGTERM each)")
        return 1 if failed or (not args.k and len(results) < 14) else 0
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
