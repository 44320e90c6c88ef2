#!/usr/bin/env bash
# Installs everything phasemap needs, idempotently, on a fresh Debian machine:
#   1. Debian -dev packages (apt-get), only those missing;
#   2. the pinned llama.cpp release from the npm package node-llama-cpp@3.22.1
#      (git bundle inside the tarball), checksum-verified, built once into a cache;
#   3. the pinned DuckDB C library (npm) — header + shared library, checksum-verified;
#   4. the report's plotting libraries (npm: vega, vega-lite, vega-embed), checksum-verified.
# Prints the cache directory on the last line of stdout ("PHASEMAP_DEPS=<dir>").
set -euo pipefail

NODE_LLAMA_CPP_VERSION=3.22.1
NODE_LLAMA_CPP_SHA256=a0d9dd80eacd2ab1cfe71aee57ac8a806487fd70b3d2a38fbec637752d9e5c5f
LLAMA_COMMIT=de3ff815ea7d559ee917f063901b8986f038abc6

CACHE=${PHASEMAP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/phasemap}
GPU=${PHASEMAP_CUDA:-OFF}
JOBS=${JOBS:-$(nproc)}
log() { printf '[deps] %s\n' "$*" >&2; }
# quiet_build LOG WHAT CMD...: runs CMD with all its output appended to LOG; stderr shows one
# progress line (ninja's [n/total], updated in place on a terminal, else only the start and the end),
# and on failure the last 40 lines of LOG and where the rest is.
quiet_build() {
  local logf=$1 what=$2 rc=0 line
  shift 2
  log "$what (log: $logf)"
  set +e
  "$@" < /dev/null 2>&1 | tee -a "$logf" | {
    while IFS= read -r line; do
      if [ -t 2 ] && [[ $line =~ ^\[([0-9]+)/([0-9]+)\] ]]; then
        printf '\r[deps] %s: %s/%s' "$what" "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" >&2
      fi
    done
  }
  rc=${PIPESTATUS[0]}
  set -e
  [ -t 2 ] && printf '\n' >&2
  if [ "$rc" -ne 0 ]; then
    log "$what failed (exit $rc); the last lines of $logf:"
    tail -n 40 "$logf" >&2
    exit "$rc"
  fi
}

# ---------------------------------------------------------------- Debian packages
APT_PKGS=(build-essential cmake ninja-build git pkg-config ca-certificates
  libcli11-dev nlohmann-json3-dev libtomlplusplus-dev libeigen3-dev libboost-math-dev
  libfmt-dev libgtest-dev libgmock-dev libbenchmark-dev libzip-dev zlib1g-dev libssl-dev
  libcpp-httplib-dev curl      # phasemap serve (cmake/serve.cmake) and its tests
  python3 python3-numpy python3-pandas
  python3-dev pybind11-dev python3-pybind11 python3-pytest   # the Python package (python/, docs/python.md)
  chromium librsvg2-bin
  clang libclang-rt-14-dev   # make fuzz: clang with libFuzzer (scripts/fuzz.sh)
  ccache)                     # compiler cache for clean-clone builds (cmake/ccache.cmake)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# node/npm may come from outside Debian (its npm package then conflicts): check the command.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# ---------------------------------------------------------------- llama.cpp
mkdir -p "$CACHE"
LDIR="$CACHE/llama.cpp-$LLAMA_COMMIT"
# No AMX on x86-64: with GGML_NATIVE, -march=native turns on ggml-cpu's AMX buffer type wherever
# cpuid lists AMX, and on some VMs that list it its kernel died with SIGILL on Q8_0/Q4_K weights.
# Without it, the other CPU extra buffer types (weight repacking for AVX2/AVX-512) stay in use.
# The flag set is part of the build directory's name (the cache key): an AMX build is not reused.
LLAMA_CFLAGS=; FLAVOUR=
if [ "$(uname -m)" = x86_64 ]; then LLAMA_CFLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"; FLAVOUR=-noamx; fi
BDIR="$LDIR/build-$( [ "$GPU" = ON ] && echo cuda || echo cpu )$FLAVOUR"
if [ ! -f "$LDIR/src/.phasemap-ok" ]; then
  tmp=$(mktemp -d "$CACHE/.fetch.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  log "fetching node-llama-cpp@$NODE_LLAMA_CPP_VERSION from npm"
  (cd "$tmp" && npm pack --silent "node-llama-cpp@$NODE_LLAMA_CPP_VERSION" >/dev/null)
  echo "$NODE_LLAMA_CPP_SHA256  $tmp/node-llama-cpp-$NODE_LLAMA_CPP_VERSION.tgz" | sha256sum -c --quiet - \
    || { log "checksum mismatch for node-llama-cpp tarball"; exit 1; }
  tar -xzf "$tmp/node-llama-cpp-$NODE_LLAMA_CPP_VERSION.tgz" -C "$tmp" package/llama/gitRelease.bundle
  rm -rf "$LDIR/src"; mkdir -p "$LDIR"
  git -c advice.detachedHead=false clone -q "$tmp/package/llama/gitRelease.bundle" "$LDIR/src"
  got=$(git -C "$LDIR/src" rev-parse HEAD)
  [ "$got" = "$LLAMA_COMMIT" ] || { log "bundle commit $got != pinned $LLAMA_COMMIT"; exit 1; }
  touch "$LDIR/src/.phasemap-ok"
  rm -rf "$tmp"; trap - EXIT
fi
if [ ! -f "$BDIR/.phasemap-ok" ]; then
  # The compiler output (GCC 12 warns ~830 times in ggml's AVX-512 code) goes to a log file in the
  # cache, not to the terminal; the flags and the build directory (the cache key) are unchanged.
  blog="$BDIR.log"
  : > "$blog"
  quiet_build "$blog" "configuring llama.cpp ($BDIR)" \
    cmake -S "$LDIR/src" -B "$BDIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=ON -DGGML_CUDA="$GPU" \
    -DCMAKE_C_FLAGS="$LLAMA_CFLAGS" -DCMAKE_CXX_FLAGS="$LLAMA_CFLAGS" \
    -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_HTML=OFF
  quiet_build "$blog" "building libllama + ggml, a few minutes once" \
    cmake --build "$BDIR" -j "$JOBS" --target llama
  touch "$BDIR/.phasemap-ok"
fi
echo "PHASEMAP_LLAMA_SRC=$LDIR/src"
echo "PHASEMAP_LLAMA_BUILD=$BDIR"

# ---------------------------------------------------------------- DuckDB (C API)
# libduckdb.so from @duckdb/node-bindings-linux-x64, duckdb.h from the duckdb package (same release).
DUCKDB_VERSION=1.4.4
DUCKDB_BINDINGS_PKG=@duckdb/node-bindings-linux-x64@1.4.4-r.4
DUCKDB_BINDINGS_TGZ=duckdb-node-bindings-linux-x64-1.4.4-r.4.tgz
DUCKDB_BINDINGS_SHA256=732fac4dc6b8f198870b9c4bb6ddf13544466daca00ad28ba2f1d80de5d7aa4b
DUCKDB_HEADER_PKG=duckdb@1.4.4
DUCKDB_HEADER_TGZ=duckdb-1.4.4.tgz
DUCKDB_HEADER_SHA256=5bb967dcbcd517670ba5f169f238fb9d6787e53752c60ebe24386169d76941ed
DDIR="$CACHE/duckdb-$DUCKDB_VERSION"
if [ ! -f "$DDIR/.phasemap-ok" ]; then
  tmp=$(mktemp -d "$CACHE/.fetch.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  log "fetching $DUCKDB_BINDINGS_PKG and $DUCKDB_HEADER_PKG from npm"
  (cd "$tmp" && npm pack --silent "$DUCKDB_BINDINGS_PKG" "$DUCKDB_HEADER_PKG" >/dev/null)
  echo "$DUCKDB_BINDINGS_SHA256  $tmp/$DUCKDB_BINDINGS_TGZ" | sha256sum -c --quiet - \
    || { log "checksum mismatch for $DUCKDB_BINDINGS_TGZ"; exit 1; }
  echo "$DUCKDB_HEADER_SHA256  $tmp/$DUCKDB_HEADER_TGZ" | sha256sum -c --quiet - \
    || { log "checksum mismatch for $DUCKDB_HEADER_TGZ"; exit 1; }
  tar -xzf "$tmp/$DUCKDB_BINDINGS_TGZ" -C "$tmp" package/libduckdb.so
  tar -xzf "$tmp/$DUCKDB_HEADER_TGZ" -C "$tmp" package/src/duckdb/src/include/duckdb.h
  rm -rf "$DDIR"; mkdir -p "$DDIR/include" "$DDIR/lib"
  mv "$tmp/package/libduckdb.so" "$DDIR/lib/libduckdb.so"
  mv "$tmp/package/src/duckdb/src/include/duckdb.h" "$DDIR/include/duckdb.h"
  touch "$DDIR/.phasemap-ok"
  rm -rf "$tmp"; trap - EXIT
fi
echo "PHASEMAP_DUCKDB_INCLUDE=$DDIR/include"
echo "PHASEMAP_DUCKDB_LIB=$DDIR/lib/libduckdb.so"

# ---------------------------------------------------------------- report assets (Vega-Lite)
# `phasemap report` inlines these three browser bundles into every page (and runs them under Node
# for --svg/--png). Pinned exact versions; each `npm pack` tarball checked against its sha256.
REPORT_PKGS=(vega@6.4.0 vega-lite@6.5.0 vega-embed@7.3.0)
REPORT_TGZ=(vega-6.4.0.tgz vega-lite-6.5.0.tgz vega-embed-7.3.0.tgz)
REPORT_SHA256=(3521fb6ff68a94a40323954f0ba4484ba4014b157bfd37f89a3b063082320c42
  811230a6bfd2cdbfc359d0c38f624a90df86657b7f251b67be88bcc4eee32b7f
  d9a958ced3240f0418df7d5e12e97dba6e63cecda15b8403e47a0db7eb6ea859)
REPORT_FILES=(build/vega.min.js build/vega-lite.min.js build/vega-embed.min.js)
RDIR="$CACHE/report-assets-vega6.4.0-vl6.5.0-embed7.3.0"
if [ ! -f "$RDIR/.phasemap-ok" ]; then
  tmp=$(mktemp -d "$CACHE/.fetch.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  log "fetching ${REPORT_PKGS[*]} from npm"
  (cd "$tmp" && npm pack --silent "${REPORT_PKGS[@]}" >/dev/null)
  rm -rf "$RDIR"; mkdir -p "$RDIR"
  for i in "${!REPORT_PKGS[@]}"; do
    echo "${REPORT_SHA256[$i]}  $tmp/${REPORT_TGZ[$i]}" | sha256sum -c --quiet - \
      || { log "checksum mismatch for ${REPORT_TGZ[$i]}"; exit 1; }
    tar -xzf "$tmp/${REPORT_TGZ[$i]}" -C "$tmp" "package/${REPORT_FILES[$i]}" package/LICENSE
    mv "$tmp/package/${REPORT_FILES[$i]}" "$RDIR/"
    mv "$tmp/package/LICENSE" "$RDIR/LICENSE.${REPORT_PKGS[$i]%@*}"
    rm -rf "$tmp/package"
  done
  touch "$RDIR/.phasemap-ok"
  rm -rf "$tmp"; trap - EXIT
fi
echo "PHASEMAP_REPORT_ASSETS=$RDIR"
echo "PHASEMAP_CCACHE_DIR=$CACHE/ccache"
