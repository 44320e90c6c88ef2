#!/usr/bin/env bash
# Crash/resume torture of `phasemap panel run` (tests/hardening/torture/test_torture.cpp): SIGKILL at
# seeded random moments (ROUNDS rounds, 1–3 kills each), SIGTERM, disk full (RLIMIT_FSIZE), two
# writers, Ctrl-C, the pre-fix half-group fixture; after each, a restarted runner must leave a DB
# equal to an uninterrupted run. The crash-point suite (CrashPoints.*) runs as well.
#
#   scripts/torture.sh [BUILD=build] [ROUNDS=10] [SEED=20240521]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build} ROUNDS=${2:-10} SEED=${3:-20240521}
[ -x "$BUILD/test_torture" ] || { echo "torture: $BUILD/test_torture is missing (build first)" >&2; exit 1; }
PM_TORTURE_ROUNDS=$ROUNDS PM_TORTURE_SEED=$SEED exec "$BUILD/test_torture"
