#!/usr/bin/python3
"""Bad-input corpus runner (issue 8): every case under cases/*.json runs the phasemap binary once
and must fail cleanly:

  * exit status == the case's "exit" (default 1), never a signal (no 134/139/negative status);
  * stderr holds exactly one non-empty line, starting "phasemap: error:", containing "expect"
    (cases with "continuation_lines": that line plus indented lines of the same message);
  * the working directory (where the case's input files live and where outputs would go) holds
    exactly the same files afterwards: no partial output, no temporary left behind.

A case file:
  {
    "about":    "what is wrong with the input",
    "args":     ["generate", "-m", "{model}", "-p", "x", "-n", "0", "-o", "{work}/out.npz"],
    "files":    {"name": SPEC, ...},          # created in {work} before the run
    "expect":   "-n must be at least 1",      # substring of the error line
    "exit":     1,                            # expected exit status (usage errors: 2)
    "requires": ["stories260K.gguf"],         # shared models needed (case skipped when absent)
    "continuation_lines": true,               # optional: indented lines may follow the error line
    "env":      {"PHASEMAP_THREADS": "four"}  # optional: environment variables set for the run
  }
SPEC is one of {"text": "..."}, {"hex": "..."}, {"npz": {member: SPEC | NPY}, "compress": bool},
{"npy": NPY} or {"truncate": "{model}", "keep": N | "half"}; NPY is
{"dtype": "<f4", "shape": [..], "fill": 0.5, "fortran": false}. Further SPECs (issue 17):
{"dir": true}, {"copy": PATH}, {"hardlink": NAME} / {"symlink": TARGET} (to a file made before it),
{"fifo": true}, {"deep_json": N} (N nested arrays), {"zeros": N} (N zero bytes, a member that
deflates ~1000:1), {"repeat": TEXT, "times": N}, {"gguf": {"kv": {key: value}, "tensors": [names]}}
(a header-only GGUF v3: ints are u32 unless "key:u64", strings are strings, no tensor data).
An npz member may carry "declared_size": N: its uncompressed size is patched to N in both the
local and the central header (a member that claims to inflate far beyond its compressed bytes).
Every file's content is compared before and after the run: an input overwritten is a failure.

Resource mode (--resource-limits): only the cases marked "resource": true (sizes that come from
input), each under prlimit --as=2 GiB --fsize=64 MiB; they must still end in their one clear error.
With --sanitized (the ASan build of make test-asan) the memory cap is 2 GiB of resident memory,
enforced by ASan's hard_rss_limit_mb, because ASan cannot start under an address-space cap.
Placeholders in args and file specs: {work}, {model} (stories260K), {rwkv} (tiny-rwkv7), {src}.

usage: run.py --phasemap BIN --cases DIR [--source-dir DIR] [-k SUBSTRING] [--resource-limits]
"""
import argparse
import concurrent.futures
import glob
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

import numpy as np


def shared_models(src):
    env = os.environ.get("PHASEMAP_SHARED")
    return os.path.join(env, "models") if env else os.path.normpath(os.path.join(src, "..", "shared", "models"))


def subst(s, env):
    for k, v in env.items():
        s = s.replace("{" + k + "}", v)
    return s


def npy_bytes(spec):
    a = np.full(spec.get("shape", [1]), spec.get("fill", 0.5), dtype=np.dtype(spec.get("dtype", "<f4")))
    if spec.get("fortran"):
        a = np.asfortranarray(a)
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def gguf_bytes(spec):
    import struct
    def gstr(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b
    kvs = spec.get("kv", {})
    tensors = spec.get("tensors", [])
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for key, val in kvs.items():
        name, _, kind = key.partition(":")
        out += gstr(name)
        if isinstance(val, str):
            out += struct.pack("<I", 8) + gstr(val)
        elif kind == "u64":
            out += struct.pack("<IQ", 10, val)
        else:
            out += struct.pack("<II", 4, val)
    off = 0
    for t in tensors:  # 1-d f32 of 4 values each
        out += gstr(t) + struct.pack("<IQIQ", 1, 4, 0, off)
        off += 32
    out += b"\0" * ((32 - len(out) % 32) % 32)
    return out + b"\0" * off


def file_bytes(spec, env):
    if "repeat" in spec:
        return (subst(spec["repeat"], env) * int(spec["times"])).encode()
    if "zeros" in spec:
        return b"\0" * int(spec["zeros"])
    if "deep_json" in spec:
        n = int(spec["deep_json"])
        return b"[" * n + b"]" * n
    if "gguf" in spec:
        return gguf_bytes(spec["gguf"])
    if "copy" in spec:
        with open(subst(spec["copy"], env), "rb") as f:
            return f.read()
    if "text" in spec:
        return subst(spec["text"], env).encode()
    if "hex" in spec:
        return bytes.fromhex(spec["hex"])
    if "npy" in spec:
        return npy_bytes(spec["npy"])
    if "npz" in spec:
        b = io.BytesIO()
        mode = zipfile.ZIP_DEFLATED if spec.get("compress") else zipfile.ZIP_STORED
        with zipfile.ZipFile(b, "w", mode) as z:
            for name, m in spec["npz"].items():
                z.writestr(name, file_bytes(m, env) if any(k in m for k in ("text", "hex", "npy", "npz", "zeros", "repeat")) else npy_bytes(m))
        data = bytearray(b.getvalue())
        import struct
        with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
            infos = {i.filename: i for i in z.infolist()}
        for name, m in spec["npz"].items():
            if "declared_size" not in m:
                continue
            n = struct.pack("<I", int(m["declared_size"]))
            off = infos[name].header_offset
            data[off + 22:off + 26] = n                       # local header: uncompressed size
            cd = data.find(b"PK\x01\x02" + b"", 0)
            while cd >= 0:                                    # central directory entry of `name`
                nlen = struct.unpack("<H", data[cd + 28:cd + 30])[0]
                if data[cd + 46:cd + 46 + nlen].decode() == name:
                    data[cd + 24:cd + 28] = n
                cd = data.find(b"PK\x01\x02", cd + 4)
        return bytes(data)
    if "truncate" in spec:
        with open(subst(spec["truncate"], env), "rb") as f:
            data = f.read()
        keep = len(data) // 2 if spec.get("keep", "half") == "half" else int(spec["keep"])
        return data[:keep]
    raise ValueError(f"unknown file spec {spec}")


def listing(d):
    """Every entry under d with what it holds: files by content hash (an input overwritten in place
    changes it), links by target, FIFOs and folders by kind."""
    import hashlib
    import stat
    out = []
    for root, dirs, files in os.walk(d):
        for n in dirs + files:
            p = os.path.join(root, n)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                what = "link:" + os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    what = "file:" + hashlib.sha1(f.read()).hexdigest()
            elif stat.S_ISFIFO(st.st_mode):
                what = "fifo"
            else:
                what = "dir"
            out.append((os.path.relpath(p, d), what))
    return sorted(out)


def run_case(path, args, env_base):
    with open(path) as f:
        case = json.load(f)
    name = os.path.splitext(os.path.basename(path))[0]
    for k in ("args", "expect"):
        if k not in case:
            return name, "fail", f"case file lacks '{k}'"
    for m in case.get("requires", []):
        if not os.path.exists(os.path.join(env_base["models"], m)):
            return name, "skip", f"{m} not present"
    tmp = tempfile.mkdtemp(prefix="pm-bad-")
    try:
        work = os.path.join(tmp, "work")
        os.mkdir(work)
        env = {"work": work, "model": os.path.join(env_base["models"], "stories260K.gguf"),
               "rwkv": os.path.join(env_base["models"], "tiny-rwkv7-834K.gguf"), "src": env_base["src"]}
        for fname, spec in case.get("files", {}).items():
            p = os.path.join(work, fname)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            if spec.get("dir"):
                os.makedirs(p, exist_ok=True)
                continue
            if "hardlink" in spec:
                os.link(os.path.join(work, spec["hardlink"]), p)
                continue
            if "symlink" in spec:
                os.symlink(subst(spec["symlink"], env), p)
                continue
            if spec.get("fifo"):
                os.mkfifo(p)
                continue
            with open(p, "wb") as f:
                f.write(file_bytes(spec, env))
        before = listing(work)
        argv = [args.phasemap] + [subst(a, env) for a in case["args"]]
        run_env = dict(os.environ, LC_ALL="C", **case.get("env", {}))
        if args.resource_limits and args.sanitized:
            # ASan reserves terabytes of shadow address space, so an address-space cap stops it
            # before main(); the same 2 GiB bound is put on resident memory through ASan's own
            # watchdog (it aborts the process past the limit, which fails the case).
            argv = ["prlimit", f"--fsize={64 << 20}", "--"] + argv
            run_env["ASAN_OPTIONS"] = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS", ""), "hard_rss_limit_mb=2048"]))
        elif args.resource_limits:
            argv = ["prlimit", f"--as={2 << 30}", f"--fsize={64 << 20}", "--"] + argv
        try:
            r = subprocess.run(argv, cwd=work, capture_output=True, timeout=case.get("timeout", 120), env=run_env)
        except subprocess.TimeoutExpired:
            return name, "fail", "timed out"
        err = r.stderr.decode(errors="replace")
        lines = [l for l in err.split("\n") if l.strip()]
        problems = []
        want = case.get("exit", 1)
        if r.returncode < 0 or r.returncode in (134, 139) or r.returncode >= 128:
            problems.append(f"crashed (status {r.returncode})")
        elif r.returncode != want:
            problems.append(f"exit {r.returncode}, expected {want}")
        # One message: one line, or (cases that declare "continuation_lines", e.g. a manifest's
        # list of problems) one line followed only by indented continuation lines.
        extra = [l for l in lines[1:] if not (case.get("continuation_lines") and l[:1] in (" ", "\t"))]
        if not lines or extra:
            problems.append(f"{len(lines)} stderr lines, expected 1" + (" plus indented continuations" if case.get("continuation_lines") else ""))
        if not lines or not lines[0].startswith("phasemap: error:"):
            problems.append("stderr does not start with 'phasemap: error:'")
        if subst(case["expect"], env) not in err:
            problems.append(f"error lacks {case['expect']!r}")
        after = listing(work)
        if after != before:
            problems.append(f"files changed: new or rewritten {sorted(set(after) - set(before))}, gone or rewritten {sorted(set(before) - set(after))}")
        if problems:
            return name, "fail", "; ".join(problems) + f"\n      argv: {' '.join(argv)}\n      stderr: {err.strip()[:600]}"
        return name, "ok", lines[0]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--phasemap", required=True)
    ap.add_argument("--cases", required=True)
    ap.add_argument("--source-dir", default=os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..")))
    ap.add_argument("-k", default="", help="run only cases whose name contains this")
    ap.add_argument("-v", action="store_true", help="print every error line")
    ap.add_argument("--resource-limits", action="store_true",
                    help="run only the cases marked resource, under prlimit --as=2G --fsize=64M")
    ap.add_argument("--sanitized", action="store_true",
                    help="the binary is an ASan build: cap resident memory (ASan hard_rss_limit_mb=2048) instead of address space")
    args = ap.parse_args()
    args.phasemap = os.path.abspath(args.phasemap)
    env_base = {"models": shared_models(os.path.abspath(args.source_dir)), "src": os.path.abspath(args.source_dir)}
    cases = sorted(glob.glob(os.path.join(args.cases, "*.json")))
    cases = [c for c in cases if args.k in os.path.basename(c)]
    if args.resource_limits:
        def is_resource(c):
            with open(c) as f:
                return json.load(f).get("resource", False)
        cases = [c for c in cases if is_resource(c)]
        if len(cases) < 15 and not args.k:
            print(f"bad-inputs: resource mode found only {len(cases)} resource cases, expected at least 15")
            return 1
    counts = {"ok": 0, "fail": 0, "skip": 0}
    # Cases are independent (each has its own directory): run a few at a time.
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        results = list(pool.map(lambda c: run_case(c, args, env_base), cases))
    for name, status, msg in results:
        counts[status] += 1
        if status != "ok" or args.v:
            print(f"{status.upper():4} {name}: {msg}")
    print(f"bad-inputs: {counts['ok']} ok, {counts['fail']} failed, {counts['skip']} skipped of {len(cases)} cases")
    if len(cases) < 170 and not args.k and not args.resource_limits:
        print("bad-inputs: the corpus must hold at least 170 cases (110 before issue 17, at least 60 added by it)")
        return 1
    return 1 if counts["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
