#!/usr/bin/env bash
# usage: npm_setup.sh SRC_DIR DEST_DIR
# Installs the pinned openai client (SRC_DIR/package.json + package-lock.json) with `npm ci` into
# DEST_DIR/node_modules for tests/serve. Idempotent: nothing is done when DEST_DIR already holds
# that lock's install. Offline-safe once npm's cache has the package (--prefer-offline). When npm
# cannot install (no npm, registry unreachable with an empty cache) it says why and fails: the npm
# registry is one of the project's declared sources (like the llama.cpp and DuckDB packages), so a
# missing client is a broken set-up, never a silently skipped test.
set -uo pipefail
src=$1; dst=$2
mkdir -p "$dst"
if [ -f "$dst/node_modules/openai/package.json" ] && cmp -s "$src/package-lock.json" "$dst/package-lock.json"; then
  echo "openai client already installed in $dst"; exit 0
fi
if ! command -v npm >/dev/null 2>&1; then echo "npm not found (scripts/deps.sh installs it)" >&2; exit 1; fi
cp "$src/package.json" "$src/package-lock.json" "$dst/"
if (cd "$dst" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error); then
  echo "openai client installed in $dst"
else
  rm -rf "$dst/node_modules"
  echo "npm ci of the pinned openai client failed (registry unreachable and nothing cached?)" >&2
  exit 1
fi
