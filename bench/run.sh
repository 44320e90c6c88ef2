#!/usr/bin/env bash
# `make bench`: phasemap's performance suite. Runs every benchmark once with settings short enough
# for a shared machine (~5 min), then rewrites BENCHMARKS.md: figures as ratios to a baseline
# measured in the same run, the machine, the date, the commands, and — at the top — every ratio
# that moved more than 10 % in the bad direction since the figures the file held before.
#
#   bench/run.sh [BUILD=build]
#   BENCH_TOKENS (32) BENCH_REPS (3) BENCH_THREADS (2)   bench_capture on the real-shape qwen2
#   BENCH_MIN_TIME (0.5)                                 seconds per google-benchmark case
#   BENCH_RSS_SHORT (64) BENCH_RSS_LONG (448)            run lengths of the peak-RSS check (LONG + 64 ≤ the model's training context, 512)
#   BENCH_MD (BENCHMARKS.md)                             file to rewrite
#   PHASEMAP_CACHE                                       the random-weight models are cached in $PHASEMAP_CACHE/bench
#   BENCH_QUANT (f32 Q8_0 Q4_K_M)                        weight variants measured beside f16 (bench_capture, bench_capture_moe,
#                                                        bench_panel); empty = none. BENCH_QUANT_REPS (2) repetitions of each
#                                                        variant's capture runs, BENCH_QUANT_TOKENS (32) its panel budget
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
TOKENS=${BENCH_TOKENS:-32} REPS=${BENCH_REPS:-3} THREADS=${BENCH_THREADS:-2} MIN_TIME=${BENCH_MIN_TIME:-0.5}
RSS_SHORT=${BENCH_RSS_SHORT:-64} RSS_LONG=${BENCH_RSS_LONG:-448}
MD=${BENCH_MD:-BENCHMARKS.md}
CACHE=${PHASEMAP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/phasemap}/bench
PM="$BUILD/phasemap"
for b in "$PM" "$BUILD/bench_capture" "$BUILD/bench_metrics" "$BUILD/bench_baseline"; do
  [ -x "$b" ] || { echo "bench: $b is missing (build with PHASEMAP_BUILD_BENCH=ON)" >&2; exit 1; }
done
mkdir -p "$CACHE"
R=$(mktemp -d "${TMPDIR:-/tmp}/pm-bench.XXXXXX")
# The step outputs are removed at exit unless a step failed: then they stay for a look.
trap '[ -s "$R/failed" ] && log "a step failed: every step output is kept in $R" || rm -rf "$R"' EXIT
log() { printf '[bench] %s\n' "$*" >&2; }
step() {  # step NAME CMD...: runs CMD, stdout to $R/NAME.out, wall time to $R/NAME.wall
  # A step that fails does not stop the others: its output goes to $R/NAME.failed (not .out, so
  # the report does not read half a figure), its name and exit status to $R/failed, and the report
  # lists it; `make bench` then exits non-zero after writing what the other steps measured.
  local name=$1; shift
  log "$name: $*"
  local t0 rc=0; t0=$(date +%s.%N)
  "$@" > "$R/$name.out" 2> >(tee "$R/$name.err" >&2) || rc=$?
  echo "$(date +%s.%N) - $t0" | bc > "$R/$name.wall"
  if [ "$rc" -ne 0 ]; then
    mv "$R/$name.out" "$R/$name.failed"
    echo "$name $rc" >> "$R/failed"
    log "$name FAILED (exit $rc); going on with the other steps"
  fi
}
t_start=$(date +%s)
cat /proc/loadavg > "$R/load_start"

# Random-weight models with real shapes (cached; same seed → same bytes).
QWEN="$CACHE/qwen2-real.gguf" LLAMA="$CACHE/llama-tiny.gguf"
[ -s "$QWEN" ] || "$PM" make-model --arch qwen2 --size real -o "$QWEN" >&2
[ -s "$LLAMA" ] || "$PM" make-model --arch llama --size tiny -o "$LLAMA" >&2
# A Mixtral-style MoE (8 experts, k = 2) at a realistic width: d 512, experts of width 1024,
# 4 blocks, the 32000-token SentencePiece vocab (with llama-bpe's 128256 the LM head would dwarf
# the experts), f16 weights.
MOE="$CACHE/llama-moe-8x2-d512.gguf"
MOE_MAKE=(make-model --arch llama --experts 8 --experts-used 2 --n-embd 512 --n-ff 1024 --vocab llama-spm --type f16)
[ -s "$MOE" ] || "$PM" "${MOE_MAKE[@]}" -o "$MOE" >&2

# ---- weight variants (issue #20): the same random models as f32 (make-model, same seed) and
# quantised with `phasemap quantize` from the f16 files; cached beside them (same inputs → same bytes).
QUANT=${BENCH_QUANT-f32 Q8_0 Q4_K_M} QREPS=${BENCH_QUANT_REPS:-2} QTOKENS=${BENCH_QUANT_TOKENS:-32}
variant() {  # variant F16_MODEL TYPE MAKE_MODEL_ARGS...: prints the cached variant's path, making it when missing
  local base=$1 type=$2; shift 2
  local lc; lc=$(tr '[:upper:]' '[:lower:]' <<< "$type")
  local out="${base%.gguf}-$lc.gguf"
  if [ ! -s "$out" ]; then
    if [ "$type" = f32 ]; then "$PM" "$@" --type f32 -o "$out" >&2
    else "$PM" quantize "$base" "$out" --type "$type" -q >&2; fi
  fi
  echo "$out"
}
MOE_BASE=()  # the MoE's make-model arguments without its weight type
for ((i = 0; i < ${#MOE_MAKE[@]}; i++)); do
  if [ "${MOE_MAKE[i]}" = --type ]; then i=$((i + 1)); else MOE_BASE+=("${MOE_MAKE[i]}"); fi
done
declare -A QWEN_V MOE_V
for q in $QUANT; do
  QWEN_V[$q]=$(variant "$QWEN" "$q" make-model --arch qwen2 --size real)
  MOE_V[$q]=$(variant "$MOE" "$q" "${MOE_BASE[@]}")
done
# ---- end of weight variants (models)

step capture "$BUILD/bench_capture" "$QWEN" --tokens "$TOKENS" --threads "$THREADS" --reps "$REPS"
# The MoE's decode steps are short (4 blocks, ~2 ms each): twice the tokens and three times the
# repetitions of the dense runs (a few seconds in all), or one disturbed run moves its ratios by 10 %.
MOE_TOKENS=$((TOKENS * 2)) MOE_REPS=$((REPS * 3)) MOE_QREPS=$((QREPS * 3))
if [ -x "$BUILD/bench_capture_moe" ]; then
  step capture_moe "$BUILD/bench_capture_moe" "$MOE" --tokens "$MOE_TOKENS" --threads "$THREADS" --reps "$MOE_REPS"
fi
step metrics "$BUILD/bench_metrics" --benchmark_min_time="$MIN_TIME" --benchmark_format=json
step baseline "$BUILD/bench_baseline" --benchmark_min_time="$MIN_TIME" --benchmark_format=json
step rss bash bench/bench_rss.sh "$PM" "$LLAMA" "$RSS_SHORT" "$RSS_LONG" "$THREADS"
if [ -x "$BUILD/bench_panel" ]; then
  step panel "$BUILD/bench_panel" "$QWEN" --threads "$THREADS"
  # Short runs: a 16-token budget, about the prompts' length (prefill-bound; see bench_panel.cpp).
  step panel_short "$BUILD/bench_panel" "$QWEN" --threads "$THREADS" --tokens 16 --no-db
fi
if [ -x "$BUILD/bench_intervene" ]; then
  step intervene "$BUILD/bench_intervene" "$QWEN" --tokens "$TOKENS" --threads "$THREADS" --reps "$((REPS + 2))"
fi
# ---- weight variants (issue #20): the same benchmarks on each variant, shorter (BENCH_QUANT_*).
for q in $QUANT; do
  step "capture_$q" "$BUILD/bench_capture" "${QWEN_V[$q]}" --tokens "$TOKENS" --threads "$THREADS" --reps "$QREPS"
  if [ -x "$BUILD/bench_capture_moe" ]; then
    step "capture_moe_$q" "$BUILD/bench_capture_moe" "${MOE_V[$q]}" --tokens "$MOE_TOKENS" --threads "$THREADS" --reps "$MOE_QREPS"
  fi
  if [ -x "$BUILD/bench_panel" ]; then
    step "panel_$q" "$BUILD/bench_panel" "${QWEN_V[$q]}" --threads "$THREADS" --tokens "$QTOKENS" --reps 1 --no-db
  fi
done
# ---- end of weight variants (steps)
if [ -f ../shared/models/stories260K.gguf ]; then
  step serve /usr/bin/python3 bench/bench_serve.py "$PM" ../shared/models/stories260K.gguf --threads "$THREADS"
fi
if [ -f "$BUILD/python/phasemap/__init__.py" ]; then
  step python env PYTHONPATH="$BUILD/python" /usr/bin/python3 bench/bench_python.py "$PM" "$QWEN" --tokens "$TOKENS" --threads "$THREADS" --reps "$REPS"
fi
# Threads on a shared machine: side by side, beside a busy core, and the quiet cost of the poll level.
step threads bash bench/bench_threads.sh "$PM" "$QWEN" "$TOKENS" "$REPS" "$THREADS"
cat /proc/loadavg > "$R/load_end"
t_total=$(( $(date +%s) - t_start ))

BENCH_QUANT_LIST="$QUANT" BENCH_MOE_TOKENS="$MOE_TOKENS" BENCH_MOE_REPS="$MOE_REPS" /usr/bin/python3 - "$R" "$MD" "$t_total" "$QWEN" "$LLAMA" "$BUILD" "$MOE" "${MOE_MAKE[*]}" <<'PY'
import datetime, json, os, platform, re, subprocess, sys
R, MD, total, QWEN, LLAMA, BUILD = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
MOE, MOE_MAKE = sys.argv[7], sys.argv[8]
rd = lambda n: open(os.path.join(R, n)).read()
have_out = lambda n: os.path.exists(os.path.join(R, n + ".out"))
env = os.environ

def lscpu(key):
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    m = re.search(rf"^{key}:\s*(.+)$", out, re.M)
    return m.group(1).strip() if m else "?"

ratios = {}   # key -> (value, better, label)
sections = []

# ---- capture overhead
def capture_modes(text):  # bench_capture: mode -> [tok/s, ratio[, tok/cpu-s, ratio]] (ratios to the plain loop)
    modes = {}
    for line in text.splitlines():
        m = re.match(r"^(plain llama\.cpp decode loop|phasemap capture .+?)((?:\s+[\d.]+){2,4})$", line.strip())
        if m: modes[m.group(1).strip()] = [float(x) for x in m.group(2).split()]
    return modes
cap = rd("capture.out") if have_out("capture") else ""
modes = capture_modes(cap)
for k, key in [("phasemap capture off", "capture_off_vs_plain"), ("phasemap capture hf:all", "capture_all_vs_plain"),
               ("phasemap capture hf:all + NPZ", "capture_npz_vs_plain")]:
    if k in modes:
        ratios[key] = (modes[k][1], "higher", f"tokens/s (wall), {k} ÷ plain llama.cpp decode loop")
        if len(modes[k]) == 4:
            ratios[key + "_cpu"] = (modes[k][3], "higher", f"tokens per CPU-second, {k} ÷ plain loop")
if "phasemap capture off" in modes and "phasemap capture hf:all" in modes:
    ratios["capture_all_vs_off"] = (modes["phasemap capture hf:all"][0] / modes["phasemap capture off"][0], "higher",
                                    "tokens/s, capture hf:all ÷ capture off")
if cap: sections.append(("Capture overhead (bench_capture)",
    f"Median tokens/s of a plain llama.cpp decode loop built from the same pinned llama.cpp (same context settings), "
    f"of phasemap's engine with capture off, with every layer captured, and captured + streamed to an NPZ; "
    f"the baseline is the plain loop of the same run.\n\n"
    f"```\n{BUILD}/bench_capture {QWEN} --tokens {env.get('BENCH_TOKENS', '32')} --threads {env.get('BENCH_THREADS', '2')} --reps {env.get('BENCH_REPS', '3')}\n```\n\n```\n{cap.strip()}\n```"))

# ---- MoE capture overhead
def moe_modes(text):  # bench_capture_moe: mode -> [tok/s, ratio, tok/cpu-s, ratio] (ratios to capture off)
    mm = {}
    for line in text.splitlines():
        m = re.match(r"^(phasemap capture .+?)((?:\s+[\d.]+){4})$", line.strip())
        if m: mm[m.group(1).strip()] = [float(x) for x in m.group(2).split()]
    return mm
if os.path.exists(os.path.join(R, "capture_moe.out")):
    cm = rd("capture_moe.out")
    mm = moe_modes(cm)
    for k, key in [("phasemap capture hf:all", "moe_capture_all_vs_off"), ("phasemap capture hf:all + routing", "moe_capture_routing_vs_off"),
                   ("phasemap capture hf:all + routing + NPZ", "moe_capture_routing_npz_vs_off")]:
        if k in mm:
            ratios[key] = (mm[k][1], "higher", f"tokens/s (wall) on the 8-expert MoE, {k} ÷ capture off")
            ratios[key + "_cpu"] = (mm[k][3], "higher", f"tokens per CPU-second, same, {k} ÷ capture off")
    sections.append(("MoE capture overhead (bench_capture_moe)",
        "Median tokens/s of phasemap's engine on a random-weight Mixtral-style MoE (llama, 4 blocks, d 512, 8 experts of "
        "width 1024, k = 2, vocab 32000, f16) with capture off, every layer captured, every layer + the routing channel "
        "(`--routing`: selected experts and weights of every MoE block), and both streamed to an NPZ; the baseline is "
        "capture off in the same run.\n\n"
        f"```\n{BUILD}/phasemap {MOE_MAKE} -o {MOE}\n{BUILD}/bench_capture_moe {MOE} --tokens {env.get('BENCH_MOE_TOKENS', '64')} "
        f"--threads {env.get('BENCH_THREADS', '2')} --reps {env.get('BENCH_MOE_REPS', '9')}\n```\n\n```\n{cm.strip()}\n```"))

# ---- metric core
def gbench(name):
    j = json.loads(rd(name))
    return {b["name"]: b for b in j["benchmarks"]}
met, base = (gbench("metrics.out"), gbench("baseline.out")) if have_out("metrics") and have_out("baseline") else ({}, {})
b_ips = base["BM_StreamSumSquares"]["items_per_second"] if base else None
rows = ["| benchmark | floats/s | ratio to stream baseline |", "|---|---:|---:|",
        f"| BM_StreamSumSquares (baseline) | {b_ips or 0:.3g} | 1.000 |"]
for n, b in met.items():
    ips = b.get("items_per_second")
    if ips is None or b_ips is None: continue
    rows.append(f"| {n} | {ips:.3g} | {ips / b_ips:.3f} |")
    ratios["metrics_" + n] = (ips / b_ips, "higher", f"floats/s of {n} ÷ floats/s of one streaming Σx² pass over the same array")
if "BM_TokenAxis" in met and "BM_TokenAxisClippedMad" in met:  # issue #20: clipped_mad ÷ the raw token axis, same run
    ratios["metrics_clipped_mad_vs_token_axis"] = (met["BM_TokenAxisClippedMad"]["items_per_second"] / met["BM_TokenAxis"]["items_per_second"],
                                                   "higher", "floats/s, BM_TokenAxisClippedMad ÷ BM_TokenAxis (target ≥ 0.3)")
if met: sections.append(("Metric core throughput (bench_metrics)",
    "Float32 values processed per second on one core, [T=4096, L'=24, d=896] (Qwen2.5-0.5B-sized run), as a ratio to "
    "bench_baseline's single streaming pass (Σx² in double) over the same array in the same run.\n\n"
    f"```\n{BUILD}/bench_metrics --benchmark_min_time={env.get('BENCH_MIN_TIME', '0.5')}\n"
    f"{BUILD}/bench_baseline --benchmark_min_time={env.get('BENCH_MIN_TIME', '0.5')}\n```\n\n" + "\n".join(rows)))

# ---- peak RSS vs run length, storage overhead
runs = [json.loads(l) for l in rd("rss.out").splitlines() if l.strip()] if have_out("rss") else []
short, long_ = (runs[0], runs[-1]) if runs else ({}, {})
if runs: ratios["rss_long_vs_short"] = (long_["max_rss_kb"] / short["max_rss_kb"], "lower",
                               f"peak RSS, n={long_['n_predict']} ÷ n={short['n_predict']} (flat = 1.00)")
if runs: ratios["npz_bytes_vs_arrays"] = (long_["npz_bytes"] / long_["array_bytes"], "lower",
                                 "NPZ file size ÷ bytes of its arrays (storage overhead)")
rows = ["| n_predict | tokens | hidden_states | logits | peak RSS | wall | NPZ bytes | NPZ ÷ arrays |", "|---:|---:|---|---|---:|---:|---:|---:|"]
for r in runs:
    rows.append(f"| {r['n_predict']} | {r['tokens']} | {r['hidden_states_shape']} | {r['logits_shape']} | {r['max_rss_kb']/1024:.1f} MiB | "
                f"{r['wall_s']:.2f} s | {r['npz_bytes']} | {r['npz_bytes']/r['array_bytes']:.4f} |")
if runs: sections.append(("Peak RSS against run length, storage overhead (bench/bench_rss.sh)",
    "`phasemap generate -o` on the tiny random-weight llama (d=64, 4 blocks, vocab 128256: logits are ~0.5 MB per token), every layer captured and the full logits "
    "saved, context fixed at the longer length so that the KV cache is the same size. The run writer streams to "
    "disk: the peak must not grow with the run (ratio ≈ 1). Storage overhead: the NPZ's size over the raw bytes of "
    "its arrays (headers, metadata.json, zip directory).\n\n"
    f"```\nbash bench/bench_rss.sh {BUILD}/phasemap {LLAMA} {env.get('BENCH_RSS_SHORT', '64')} {env.get('BENCH_RSS_LONG', '448')} {env.get('BENCH_THREADS', '2')}\n```\n\n" + "\n".join(rows)))

m = re.search(r"plain llama\.cpp batched decode: 16 sequences ([\d.]+) tok/s, 1 sequence ([\d.]+) tok/s, ratio ([\d.]+)", cap)
if m:
    ratios["plain_parallel16_vs_1"] = (float(m.group(3)), "higher",
                                       "plain llama.cpp loop tokens/s, 16 sequences per decode ÷ 1 (the batching ceiling of this machine)")

# ---- batched panel scaling
def panel_speedups(text):  # bench_panel: matches of (P, wall speed-up, CPU speed-up) against --parallel 1
    return re.finditer(r"speed-up parallel (\d+) / 1: ([\d.]+)× wall, ([\d.]+)× CPU", text)
if os.path.exists(os.path.join(R, "panel.out")):
    pan = rd("panel.out")
    for m in panel_speedups(pan):
        ratios[f"panel_parallel{m.group(1)}_vs_1"] = (float(m.group(2)), "higher",
                                                    f"panel tokens/s (wall), --parallel {m.group(1)} ÷ --parallel 1 (target for 16: ≥ 3)")
    m = re.search(r"panel speed-up ÷ plain llama\.cpp's, parallel (\d+): ([\d.]+) wall, ([\d.]+) CPU", pan)
    if m:
        ratios[f"panel_parallel{m.group(1)}_vs_plain"] = (float(m.group(2)), "higher",
            f"panel --parallel {m.group(1)} ÷ --parallel 1 speed-up ÷ plain llama.cpp's on the same prompts, budget and threads (target ≥ 0.95)")
        ratios[f"panel_parallel{m.group(1)}_vs_plain_cpu"] = (float(m.group(3)), "higher", "same, tokens per CPU-second")
    m = re.search(r"storage overhead \(DB vs none\): ([-+\d.]+) % wall, ([-+\d.]+) % CPU", pan)
    if m:
        ratios["panel_db_vs_nodb"] = (1.0 / (1.0 + float(m.group(1)) / 100.0), "higher",
                                      "panel tokens/s (wall), DB writes ÷ no DB (target ≥ 0.95)")
    short = ""
    if os.path.exists(os.path.join(R, "panel_short.out")):
        short = rd("panel_short.out")
        for m in panel_speedups(short):
            ratios[f"panel_short_parallel{m.group(1)}_vs_1"] = (float(m.group(2)), "higher",
                                                              f"same, 16-token runs (prefill about half the work)")
        short = (f"\n\nShort runs (16 tokens, about as long as the prompts, so prefill is about half the work):\n\n"
                 f"```\n{BUILD}/bench_panel {QWEN} --threads {env.get('BENCH_THREADS', '2')} --tokens 16 --no-db\n```\n\n```\n{short.strip()}\n```")
    sections.append(("Batched panel scaling and storage overhead (bench_panel)",
                     f"Runs of 64 tokens (`generate`'s default budget), 16 prompts of the general panel:\n\n"
                     f"```\n{BUILD}/bench_panel {QWEN} --threads {env.get('BENCH_THREADS', '2')}\n```\n\n```\n{pan.strip()}\n```" + short))
else:
    sections.append(("Batched panel scaling", f"Not measured: `{BUILD}/bench_panel` does not exist in this build (build it with the project, PHASEMAP_BUILD_BENCH=ON, to measure 1/4/16 sequences)."))

# ---- phasemap serve against panel run (bench_serve.py)
if os.path.exists(os.path.join(R, "serve.out")):
    sv = rd("serve.out")
    m = re.search(r"serve_vs_panel: (?:median )?([\d.]+)", sv)
    if m:
        ratios["serve_vs_panel_parallel16"] = (float(m.group(1)), "higher",
                                               "tokens/s (wall), 16 streaming clients of `serve --parallel 16 --db` ÷ `panel run --parallel 16` (target ≥ 0.85)")
    for q in ("p50", "p99"):
        m = re.search(rf"latency_overhead_{q}: (?:median )?([-+\d.]+)", sv)
        if m:
            ratios[f"serve_extension_latency_{q}"] = (1.0 + float(m.group(1)), "lower",
                                                      f"per-token latency {q}, with the `phasemap` extension ÷ without (target ≤ 1.03)")
    sections.append(("phasemap serve (bench_serve.py)",
                     "The 72 prompts of the builtin `stories` panel, 48 tokens each, greedy, on stories260K: 16 streaming clients "
                     "of `phasemap serve --parallel 16 --db` against `phasemap panel run --parallel 16` on the same prompts and "
                     "budget; per-token latency = gaps between token chunks at the clients.\n\n"
                     f"```\n/usr/bin/python3 bench/bench_serve.py {BUILD}/phasemap ../shared/models/stories260K.gguf --reps 2\n```\n\n"
                     f"```\n{sv.strip()}\n```"))

# ---- intervention overhead
if os.path.exists(os.path.join(R, "intervene.out")):
    iv = rd("intervene.out")
    for m in re.finditer(r"capture (\S+)\s+none:.*?ratio ([\d.]+) \(cpu ([\d.]+)\)", iv):
        key = "intervene_add_vs_none" + ("" if m.group(1) == "none" else "_capture")
        ratios[key] = (float(m.group(2)), "higher",
                       f"tokens/s (wall), one `add` on every token ÷ no intervention, capture {m.group(1)} (target ≥ 0.95)")
        ratios[key + "_cpu"] = (float(m.group(3)), "higher", f"tokens per CPU-second, same, capture {m.group(1)}")
    sections.append(("Intervention overhead (bench_intervene)",
                     "Median tokens/s with one `add` intervention at the middle block on every token (prefill included) ÷ "
                     "without, modes alternating within each repetition.\n\n"
                     f"```\n{BUILD}/bench_intervene {QWEN} --tokens {env.get('BENCH_TOKENS', '32')} --threads "
                     f"{env.get('BENCH_THREADS', '2')} --reps {int(env.get('BENCH_REPS', '3')) + 2}\n```\n\n```\n{iv.strip()}\n```"))

# ---- Python package
if os.path.exists(os.path.join(R, "python.out")):
    pyo = rd("python.out")
    for key, what in (("python_vs_cli", "decode tokens/s, Python `Model.generate` hf:all ÷ `phasemap generate` hf:all (target ≥ 0.97)"),
                      ("hook_vs_none", "tokens/s, Python generate with one hooked layer (no-op hook) ÷ none")):
        m = re.search(rf"ratio {key} ([\d.]+)", pyo)
        if m:
            ratios["python_" + key if not key.startswith("python") else key] = (float(m.group(1)), "higher", what)
    sections.append(("Python package (bench/bench_python.py)",
                     "Decode tokens/s of `Model.generate(layers=\"hf:all\")` and of `phasemap generate --layers hf:all`, each "
                     "as (T − 1) ÷ (time at n = T − time at n = 1) so that process start, model load and prefill cancel; and "
                     "one no-op Python hook on the middle block ÷ no hook (whole calls, in-process).\n\n"
                     f"```\nPYTHONPATH={BUILD}/python bench/bench_python.py {BUILD}/phasemap {QWEN} --tokens {env.get('BENCH_TOKENS', '32')} "
                     f"--threads {env.get('BENCH_THREADS', '2')} --reps {env.get('BENCH_REPS', '3')}\n```\n\n```\n{pyo.strip()}\n```"))

# ---- threads on a shared machine (bench/bench_threads.sh)
if os.path.exists(os.path.join(R, "threads.out")):
    th = rd("threads.out")
    for key, better, what in (("side_by_side_vs_2solo", "lower", "wall time of two `generate -t 2` side by side ÷ 2 × one alone (target ≤ 1.15)"),
                      ("busy_vs_quiet", "lower", "wall time of `generate -t 2` beside a busy core ÷ alone (target ≤ 2.2)"),
                      ("side_by_side_vs_2solo_poll100", "lower", "same as side_by_side_vs_2solo with `--poll 100` (libgomp's spin, the old default)"),
                      ("busy_vs_quiet_poll100", "lower", "same as busy_vs_quiet with `--poll 100`"),
                      ("quiet_vs_spin", "higher", "tokens/s alone, default poll ÷ `--poll 100` (target ≥ 0.98)")):
        m = re.search(rf"^ratio {key} ([\d.]+)$", th, re.M)
        if m:
            ratios["threads_" + key] = (float(m.group(1)), better, what)
    sections.append(("Threads on a shared machine (bench/bench_threads.sh)",
                     "Wall time of `phasemap generate -t 2` on the real-shape qwen2 (every layer captured, model load included) alone, "
                     "twice side by side, and beside a process that keeps one core busy, with the default poll level and with "
                     "`--poll 100` (libgomp's own spin count, how phasemap's workers waited before the poll level existed); "
                     "modes interleaved per repetition, medians.\n\n"
                     f"```\nbash bench/bench_threads.sh {BUILD}/phasemap {QWEN} {env.get('BENCH_TOKENS', '32')} {env.get('BENCH_REPS', '3')} "
                     f"{env.get('BENCH_THREADS', '2')}\n```\n\n```\n{th.strip()}\n```"))

# ---- weight variants (issue #20): capture overhead and tokens/s on f32 / Q8_0 / Q4_K_M beside f16
QUANT = env.get("BENCH_QUANT_LIST", "").split()
if QUANT:
    def panel_line(text, what):  # tok/s wall of "no DB, --parallel P" lines
        m = re.search(rf"no DB,  --parallel {what}\s*:\s+([\d.]+) tok/s wall", text)
        return float(m.group(1)) if m else None
    def weight_row(label, c, moe, pan):  # c, moe: parsed modes; pan: bench_panel text (or "")
        plain, off, hf = (c.get(k, [None])[0] for k in ("plain llama.cpp decode loop", "phasemap capture off", "phasemap capture hf:all"))
        sp = {int(m.group(1)): float(m.group(2)) for m in panel_speedups(pan)}
        return {"label": label, "plain": plain, "off": off, "hf": hf, "off_vs_plain": off / plain if off and plain else None,
                "hf_vs_off": hf / off if hf and off else None, "panel16": sp.get(16),
                "moe_off": moe.get("phasemap capture off", [None])[0], "moe_hf_vs_off": moe.get("phasemap capture hf:all", [None, None])[1]}
    base = weight_row("f16", modes, mm if os.path.exists(os.path.join(R, "capture_moe.out")) else {},
                      rd("panel.out") if os.path.exists(os.path.join(R, "panel.out")) else "")
    wrows = [base]
    for q in QUANT:
        have = lambda n: os.path.exists(os.path.join(R, f"{n}_{q}.out"))
        if not have(f"capture"):
            continue
        qc = rd(f"capture_{q}.out")
        row = weight_row(q, capture_modes(qc), moe_modes(rd(f"capture_moe_{q}.out")) if have("capture_moe") else {},
                         rd(f"panel_{q}.out") if have("panel") else "")
        wrows.append(row)
        k = q.lower()
        for key, v, label in (
                (f"quant_{k}_capture_all_vs_off", row["hf_vs_off"], f"{q} weights: tokens/s, capture hf:all ÷ capture off (same run)"),
                (f"quant_{k}_capture_off_vs_plain", row["off_vs_plain"], f"{q} weights: tokens/s, capture off ÷ plain llama.cpp loop (same run)"),
                (f"quant_{k}_vs_f16_capture_all", row["hf"] / base["hf"] if row["hf"] and base["hf"] else None,
                 f"{q} ÷ f16 weights: tokens/s with capture hf:all (separate steps of this run)"),
                (f"quant_{k}_vs_f16_plain", row["plain"] / base["plain"] if row["plain"] and base["plain"] else None,
                 f"{q} ÷ f16 weights: tokens/s of the plain llama.cpp loop (separate steps of this run)"),
                (f"quant_{k}_panel_parallel16_vs_1", row["panel16"], f"{q} weights: panel tokens/s, --parallel 16 ÷ --parallel 1 ({env.get('BENCH_QUANT_TOKENS', '32')}-token runs)"),
                (f"quant_{k}_moe_capture_all_vs_off", row["moe_hf_vs_off"], f"{q} weights, 8-expert MoE: tokens/s, capture hf:all ÷ capture off"),
                (f"quant_{k}_moe_vs_f16", row["moe_off"] / base["moe_off"] if row["moe_off"] and base["moe_off"] else None,
                 f"{q} ÷ f16 weights, 8-expert MoE: tokens/s with capture off (separate steps)")):
            if v is not None: ratios[key] = (v, "higher", label)
    f = lambda v, p=3: "" if v is None else f"{v:.{p}f}"
    rel = lambda v, b: "" if v is None or not b else f"{v / b:.3f}"
    rows = ["| weights | plain loop tok/s | ÷ f16 | capture off ÷ plain | capture hf:all ÷ off | hf:all tok/s ÷ f16 | panel ×16 ÷ ×1 | MoE hf:all ÷ off | MoE tok/s ÷ f16 |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for w in wrows:
        rows.append(f"| {w['label']} | {f(w['plain'], 2)} | {rel(w['plain'], base['plain'])} | {f(w['off_vs_plain'])} | {f(w['hf_vs_off'])} | "
                    f"{rel(w['hf'], base['hf'])} | {f(w['panel16'], 2)} | {f(w['moe_hf_vs_off'])} | {rel(w['moe_off'], base['moe_off'])} |")
    cmds = "\n".join(f"{BUILD}/bench_capture <qwen2-real-{q.lower()}.gguf> --tokens {env.get('BENCH_TOKENS', '32')} --threads {env.get('BENCH_THREADS', '2')} "
                      f"--reps {env.get('BENCH_QUANT_REPS', '2')}   # and bench_capture_moe on the MoE's variant, "
                      f"bench_panel --tokens {env.get('BENCH_QUANT_TOKENS', '32')} --reps 1 --no-db" for q in QUANT)
    sections.append(("Weight types: f16, f32, Q8_0, Q4_K_M (bench_capture, bench_capture_moe, bench_panel)",
        "The dense real-shape qwen2 and the 8-expert MoE as f32 (`make-model --type f32`, same seed) and quantised from their f16 "
        "files with `phasemap quantize --type Q8_0 | Q4_K_M` (cached beside them). Each variant runs the same benchmarks, shorter "
        "(`BENCH_QUANT_REPS` repetitions, `BENCH_QUANT_TOKENS`-token panel runs without the DB comparison); the f16 row is the main "
        "steps above (its panel figure from the 64-token runs). Within a row the ratios share a run (modes interleaved); the ÷ f16 "
        "columns divide separate steps of the same `make bench`, so they also carry any change of load between them.\n\n"
        f"```\n{cmds}\n```\n\n" + "\n".join(rows)))
# ---- end of weight variants (report)

# ---- steps that failed (step() in run.sh): named, with the end of what they printed
if os.path.exists(os.path.join(R, "failed")):
    body = []
    for line in rd("failed").splitlines():
        name, rc = line.split()
        err = rd(f"{name}.err") if os.path.exists(os.path.join(R, f"{name}.err")) else ""
        tail = "\n".join(err.strip().splitlines()[-10:])
        body.append(f"- `{name}` exited with status {rc}; its figures are missing above. Last lines on stderr:\n\n```\n{tail}\n```")
    sections.insert(0, ("Steps that failed in this run", "\n".join(body)))

# ---- previous figures and regressions
prev, prev_date = {}, None
if os.path.exists(MD):
    m = re.search(r"<!-- bench-data (\{.*?\}) -->", open(MD).read(), re.S)
    if m:
        d = json.loads(m.group(1)); prev, prev_date = d.get("ratios", {}), d.get("date")
regress, table = [], ["| ratio | value | previous | change | better |", "|---|---:|---:|---:|---|"]
for k, (v, better, label) in ratios.items():
    p = prev.get(k, {}).get("value")
    ch = "" if p in (None, 0) else f"{100 * (v / p - 1):+.1f} %"
    table.append(f"| `{k}` — {label} | {v:.3f} | {'' if p is None else f'{p:.3f}'} | {ch} | {better} |")
    if p:
        if (better == "higher" and v < 0.9 * p) or (better == "lower" and v > 1.1 * p):
            regress.append(f"- **`{k}`**: {v:.3f} against {p:.3f} before ({100 * (v / p - 1):+.1f} %) — {label}")

cores, threads = lscpu(r"Core\(s\) per socket"), lscpu(r"Thread\(s\) per core")
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
ls, le = rd("load_start").split()[:3], rd("load_end").split()[:3]
out = ["# BENCHMARKS", ""]
if regress:
    out += [f"## ⚠ Regressions beyond 10 % against the previous figures ({prev_date})", ""] + regress + [""]
elif prev:
    out += [f"No ratio moved more than 10 % in the bad direction since the previous figures ({prev_date}).", ""]
else:
    out += ["First recorded figures: no previous run to compare with.", ""]
out += [
    "Written by `make bench` (`bash bench/run.sh BUILD`); every figure is a ratio to a baseline measured in the same run,",
    "so figures from different machines or loads stay comparable. Regressions are checked against the figures this",
    "file held before the run (the `bench-data` block at the end).", "",
    "## Machine and run", "",
    f"- date: {now}",
    f"- CPU: {lscpu('Model name')}; {os.cpu_count()} logical CPUs ({cores} cores per socket, {threads} threads per core)",
    f"- kernel: {platform.release()}; memory: {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
    f"- load average at start / end: {' '.join(ls)} / {' '.join(le)}",
    f"- total bench wall time: {total} s",
    f"- models: `{QWEN}` (`phasemap make-model --arch qwen2 --size real`), `{LLAMA}` (`phasemap make-model --arch llama --size tiny`)",
    "",
    "Contention: this machine is shared (other builds and tests ran during the measurement, see the load average).",
    "The ratios divide out most of it — the baseline and the measured mode share the same moments (bench_capture",
    "rotates the order of its modes per repetition) — but single figures can move by several percent between runs.",
    "",
    "## Ratios", "",
] + table + [""]
for title, body in sections:
    out += [f"## {title}", "", body, ""]
out += [f"<!-- bench-data {json.dumps({'date': now, 'ratios': {k: {'value': v, 'better': b} for k, (v, b, _) in ratios.items()}})} -->", ""]
open(MD, "w").write("\n".join(out))
print("\n".join(regress) if regress else "bench: no regression beyond 10 %", file=sys.stderr)
PY
log "wrote $MD (${t_total} s)"
if [ -s "$R/failed" ]; then
  log "steps that failed: $(cut -d' ' -f1 "$R/failed" | tr '\n' ' ')(their figures are missing from $MD)"
  exit 1
fi
