#!/usr/bin/env bash
# Threads on a shared machine (README "Threads", BENCHMARKS.md): wall time of
# `phasemap generate -t THREADS -n TOKENS` (every layer captured) run
#   - alone ("solo"),
#   - twice side by side (both started together; the slower one counts),
#   - beside one busy core (a process spinning in a shell loop),
# each with the default poll level and with --poll 100, which is libgomp's own spin count
# (GOMP_SPINCOUNT 300000), the waiting phasemap did before the poll level existed.
# Repetitions interleave the modes; each figure is the median. Printed ratios (same run):
#   side_by_side_vs_2solo   side-by-side time ÷ (2 × solo time)        target ≤ 1.15
#   busy_vs_quiet           beside a busy core ÷ solo                  target ≤ 2.2
#   quiet_vs_spin           solo tokens/s, default poll ÷ --poll 100   target ≥ 0.98
# plus the same two contention ratios for --poll 100 (what the default replaces).
#
#   bash bench/bench_threads.sh PHASEMAP MODEL [TOKENS=32] [REPS=3] [THREADS=2]
set -euo pipefail
PM=$1 MODEL=$2 TOKENS=${3:-32} REPS=${4:-3} THREADS=${5:-2}
R=$(mktemp -d "${TMPDIR:-/tmp}/pm-threads.XXXXXX")
SPIN=
cleanup() { [ -n "$SPIN" ] && kill "$SPIN" 2>/dev/null; rm -rf "$R"; }
trap cleanup EXIT
# Our own settings only: a GOMP_SPINCOUNT / OMP_WAIT_POLICY of the caller would override the default.
unset GOMP_SPINCOUNT OMP_WAIT_POLICY

run1() {  # run1 OUTFILE POLL...: one generate; its wall seconds appended to OUTFILE
  local out=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  "$PM" generate -m "$MODEL" -p "Once upon a time there was a little" -n "$TOKENS" -t "$THREADS" -q "$@" > /dev/null
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc >> "$out"
}
pair() {  # pair OUTFILE ARGS...: two runs started together; the slower wall time is recorded
  local a="$R/pa" b="$R/pb"
  : > "$a"; : > "$b"
  run1 "$a" "${@:2}" & local p1=$!
  run1 "$b" "${@:2}" & local p2=$!
  wait "$p1" "$p2"
  printf '%s\n%s\n' "$(cat "$a")" "$(cat "$b")" | sort -g | tail -1 >> "$1"
}
busy() {  # busy OUTFILE ARGS...: one run beside a process that keeps one core busy
  ( while :; do :; done ) & SPIN=$!
  sleep 0.2
  run1 "$@"
  kill "$SPIN"; wait "$SPIN" 2>/dev/null || true; SPIN=
}
median() { sort -g "$1" | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

# Warm the page cache with the model.
"$PM" generate -m "$MODEL" -p "Once" -n 1 -t "$THREADS" -q --poll 0 > /dev/null
for rep in $(seq "$REPS"); do
  for mode in dflt spin; do
    extra=(); [ "$mode" = spin ] && extra=(--poll 100)
    run1 "$R/solo_$mode" "${extra[@]}"
    pair "$R/pair_$mode" "${extra[@]}"
    busy "$R/busy_$mode" "${extra[@]}"
  done
done
echo "phasemap generate -t $THREADS -n $TOKENS, $REPS repetitions (median wall seconds, model load included)"
for mode in dflt spin; do
  s=$(median "$R/solo_$mode") p=$(median "$R/pair_$mode") b=$(median "$R/busy_$mode")
  label=$([ "$mode" = dflt ] && echo "default poll" || echo "--poll 100 (libgomp's spin, the old default)")
  printf '%-44s solo %6.2f s  side by side %6.2f s  beside a busy core %6.2f s\n' "$label" "$s" "$p" "$b"
  suffix=$([ "$mode" = dflt ] && echo "" || echo "_poll100")
  echo "ratio side_by_side_vs_2solo$suffix $(echo "scale=4; $p / (2 * $s)" | bc)"
  echo "ratio busy_vs_quiet$suffix $(echo "scale=4; $b / $s" | bc)"
done
echo "ratio quiet_vs_spin $(echo "scale=4; $(median "$R/solo_spin") / $(median "$R/solo_dflt")" | bc)"
