#!/usr/bin/python3
"""ctest layering.forbidden_include: the layering check (scripts/check_layering.py) fails, naming
the file, the line and the edge, when a forbidden include is added — run on a temporary copy of
src/ and include/ (the tree itself is not touched). The unmodified copy must pass first.

usage: check_fails_on_forbidden_include.py SOURCE_DIR
"""
import os
import shutil
import subprocess
import sys
import tempfile

src = sys.argv[1]
check = os.path.join(src, "scripts", "check_layering.py")


def run(root):
    r = subprocess.run([sys.executable, check, root], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def inject(root, rel, line):
    path = os.path.join(root, rel)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    with open(path, "w", encoding="utf-8") as f:
        f.write(line + "\n" + text)


failures = []
cases = [
    ("src/metrics/kernels.cpp", '#include "phasemap/store/store.hpp"', "src/metrics/kernels.cpp:1: metrics may not include phasemap/store/store.hpp (metrics → store)"),
    ("src/store/audits.cpp", "#include <llama.h>", "src/store/audits.cpp:1: store may not include llama.h (store → llama.cpp (llama.h))"),
    ("include/phasemap/metrics/views.hpp", '#include "phasemap/capture/capture.hpp"', "include/phasemap/metrics/views.hpp:1: metrics may not include phasemap/capture/capture.hpp (metrics → capture)"),
    ("src/panel/plan.cpp", "#include <gguf.h>", "src/panel/plan.cpp:1: panel may not include gguf.h (panel → ggml's gguf API)"),
]
with tempfile.TemporaryDirectory() as tmp:
    for d in ("src", "include"):
        shutil.copytree(os.path.join(src, d), os.path.join(tmp, d))
    rc, out = run(tmp)
    if rc != 0:
        failures.append(f"the unmodified copy fails the check:\n{out}")
    for rel, line, expect in cases:
        case = os.path.join(tmp, "case")
        shutil.rmtree(case, ignore_errors=True)
        for d in ("src", "include"):
            shutil.copytree(os.path.join(tmp, d), os.path.join(case, d))
        inject(case, rel, line)
        rc, out = run(case)
        if rc != 1:
            failures.append(f"{line} in {rel}: exit {rc}, expected 1\n{out}")
        elif expect not in out:
            failures.append(f"{line} in {rel}: output lacks '{expect}':\n{out}")
        else:
            print(f"ok: {line} in {rel} → {expect}")
if failures:
    print("\n".join(failures))
    sys.exit(1)
