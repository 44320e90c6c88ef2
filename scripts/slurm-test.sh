#!/usr/bin/env bash
# Real Slurm test of `phasemap panel slurm` + `phasemap merge` on localhost:
#   installs slurm-wlm and munge when missing (exit 77 when that is impossible),
#   starts munged, slurmctld and slurmd with a generated config (loopback ports, state and logs
#   in a temp dir), submits the 4-task array written by `phasemap panel slurm`, waits (bounded),
#   merges the shard DBs and checks the result equals a single-process run of the same panel
#   (table by table, via Parquet exports). Stops the daemons by pid.
# Usage: slurm-test.sh PHASEMAP_BINARY MODEL.gguf
set -euo pipefail
PM=$(readlink -f "$1")
MODEL=$(readlink -f "$2")
TASKS=4
log() { printf '[slurm-test] %s\n' "$*" >&2; }

[ -f "$MODEL" ] || { log "model $MODEL not found"; exit 77; }

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
   || ! command -v sbatch >/dev/null; then
  log "installing slurm-wlm and munge"
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
          slurm-wlm munge >/dev/null; }; then
    log "cannot install slurm-wlm/munge"; exit 77
  fi
fi

T=$(mktemp -d /tmp/pm-slurm.XXXXXX)
PIDS=()
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
    for f in "$T"/*.log "$T"/shards/slurm-*.out; do [ -f "$f" ] && { echo "== $f"; tail -n 30 "$f"; } >&2; done
  fi
  rm -rf "$T"
  exit $rc
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CTLD_PORT=$(free_port); SLURMD_PORT=$(free_port)
while [ "$SLURMD_PORT" = "$CTLD_PORT" ]; do SLURMD_PORT=$(free_port); done
HOST=$(hostname -s)
mkdir -p "$T/state" "$T/spool" "$T/shards"

# munge with its own key and socket
dd if=/dev/urandom of="$T/munge.key" bs=1024 count=1 status=none
chmod 0400 "$T/munge.key"
munged -F --force --key-file="$T/munge.key" --socket="$T/munge.sock" --pid-file="$T/munged.pid" \
  --log-file="$T/munged.log" --seed-file="$T/munge.seed" 2>>"$T/munged.log" &
PIDS+=($!)
for _ in $(seq 50); do [ -S "$T/munge.sock" ] && break; sleep 0.1; done
[ -S "$T/munge.sock" ] || { log "munged did not start"; exit 1; }

cat > "$T/slurm.conf" <<EOF
ClusterName=pmtest
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=$(id -un)
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$T/munge.sock
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
NodeName=pmnode NodeAddr=127.0.0.1 NodeHostname=$HOST CPUs=$(nproc) State=UNKNOWN
PartitionName=pm Nodes=pmnode Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
export SLURM_CONF="$T/slurm.conf"

slurmctld -D -i -f "$SLURM_CONF" >>"$T/slurmctld.log" 2>&1 &
PIDS+=($!)
slurmd -D -N pmnode -f "$SLURM_CONF" >>"$T/slurmd.log" 2>&1 &
PIDS+=($!)

# Wait for the node to be usable.
ok=
for _ in $(seq 100); do
  if sinfo -h -N -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then ok=1; break; fi
  sleep 0.3
done
[ -n "$ok" ] || { log "slurm node did not come up: $(sinfo -h -N 2>&1 | head -3)"; exit 1; }
log "slurm up (slurmctld :$CTLD_PORT, slurmd :$SLURMD_PORT)"

cat > "$T/panel.toml" <<EOF
name = "slurm-test"
[generation]
temperatures = [0.0, 0.8]
n_predict = 8
seeds = [1, 2]
[[models]]
label = "stories"
path = "$MODEL"
[[prompts]]
builtin = "stories"
categories = ["animals", "family"]
limit = 1
EOF

"$PM" panel slurm "$T/panel.toml" --tasks $TASKS --out-dir "$T/shards" --threads 1 --time "" -o "$T/job.sh"
JOB=$(sbatch --parsable "$T/job.sh")
JOB=${JOB%%;*}
log "submitted array job $JOB"

# Meanwhile: the single-process reference run.
"$PM" panel run "$T/panel.toml" --db "$T/single.duckdb" --threads 1 -q

for i in $(seq 600); do
  [ -z "$(squeue -h -j "$JOB" 2>/dev/null)" ] && break
  sleep 0.25
done
[ -z "$(squeue -h -j "$JOB" 2>/dev/null)" ] || { log "array job did not finish in time"; scancel "$JOB" || true; exit 1; }

shards=()
for i in $(seq $TASKS); do
  f="$T/shards/shard-$i-of-$TASKS.duckdb"
  [ -f "$f" ] || { log "task $i wrote no DB ($f)"; exit 1; }
  shards+=("$f")
done
"$PM" merge "${shards[@]}" -o "$T/all.duckdb"
"$PM" merge "${shards[@]}" -o "$T/all.duckdb"   # idempotent

"$PM" export "$T/all.duckdb" --parquet "$T/pq-merged" -q
"$PM" export "$T/single.duckdb" --parquet "$T/pq-single" -q
for t in meta models runs tokens; do
  cmp -s "$T/pq-merged/$t.parquet" "$T/pq-single/$t.parquet" || { log "table $t differs between merged shards and single run"; exit 1; }
done
log "4-task Slurm array + merge == single-process DB (meta, models, runs, tokens)"
