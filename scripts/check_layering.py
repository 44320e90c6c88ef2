#!/usr/bin/python3
"""The layering check (make test: ctest `layering.check`).

Maps every file under src/<module>/ and include/phasemap/<module>/ to its module, reads each
#include "phasemap/..." (and a module's own relative includes) and the system includes llama.h,
duckdb.h, ggml*.h and gguf.h, and fails on an edge that the table below does not allow. The table
is docs/DESIGN.md's "allowed edges": a module may use the modules listed and, transitively, theirs;
the external libraries (llama.cpp, DuckDB, ggml's gguf API) only where listed, never transitively.

usage: check_layering.py [ROOT]    (ROOT: the repository, default the parent of this script's folder)
Prints one line per violation, "FILE:LINE: MODULE may not include TARGET (MODULE → OTHER)", and
exits 1 when there is any; 0 and a one-line summary otherwise.
"""
import os
import re
import sys

# DESIGN.md's table. "*" = anything.
ALLOWED = {
    "stats": [],
    "metrics": ["stats"],
    "io": ["stats"],
    "gguf": ["@gguf"],
    "capture": ["metrics", "io", "gguf", "@llama", "@gguf"],
    "store": ["metrics", "io", "@duckdb"],
    "steer": ["capture", "metrics", "stats"],
    "audit": ["metrics", "stats"],
    "report": ["audit", "steer", "store", "metrics", "stats"],  # store: write_report reads a results DB (issue 13)
    "panel": ["capture", "store", "metrics", "io"],
    "plan": ["panel", "steer", "capture", "audit", "store", "report"],
    "cli": ["*"],
    "python": ["*"],
    "serve": ["*"],
    # Not in DESIGN.md's table: the random-weight GGUF writer behind `make-model` (ggml's gguf API
    # to write, io for the atomic file writer).
    "modelgen": ["io", "@gguf"],
}

# Known exceptions, each with the change that removes it: (module, other module, files or None for
# every file of the module) → why. Keep this list short and in ONE place.
EXCEPTIONS = {
    # Found by this check (issue 12), open: the control-vector type lives in steer while its GGUF
    # reader/writer is in capture.
    ("capture", "steer", ("src/capture/cvec.cpp",)): "open: ControlVector belongs below capture (or its I/O in steer)",
    # Found by this check (issue 12), open: io's summary JSON and run-file reader use metrics types
    # (RunSummary, TokenProbStats); DESIGN.md lets io use stats only.
    ("io", "metrics", ("src/io/summary_json.cpp", "include/phasemap/io/summary_json.hpp", "include/phasemap/io/run_file.hpp")):
        "open: the summary JSON / per-token stats of a run file belong to metrics or a layer above io",
}


def excepted(mod, other, path):
    for (a, b, only), _ in EXCEPTIONS.items():
        if a == mod and b == other and (only is None or path in only):
            return True
    return False


# Every public header lives in include/phasemap/<module>/: the folder decides its module. A header
# placed at the top level has no module and fails the check.
TOP_LEVEL_HEADERS = {}

EXTERNAL = [
    (re.compile(r"^llama(-[a-z]+)?\.h$"), "@llama"),
    (re.compile(r"^duckdb(\.h|\.hpp)$"), "@duckdb"),
    (re.compile(r"^gguf\.h$"), "@gguf"),
    (re.compile(r"^ggml[a-z0-9_-]*\.h$"), "@gguf"),
]
EXTERNAL_NAMES = {"@llama": "llama.cpp (llama.h)", "@duckdb": "DuckDB (duckdb.h)", "@gguf": "ggml's gguf API"}

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def closure(module):
    """Modules `module` may use (transitively), and the external APIs it may use directly."""
    direct = ALLOWED.get(module, [])
    if "*" in direct:
        return None, None
    mods, ext, todo = set(), {d for d in direct if d.startswith("@")}, [d for d in direct if not d.startswith("@")]
    while todo:
        m = todo.pop()
        if m in mods:
            continue
        mods.add(m)
        todo += [d for d in ALLOWED.get(m, []) if not d.startswith("@") and d != "*"]
    return mods, ext


def module_of_header(rel):
    """Module of a header path under include/phasemap/ ("metrics/views.hpp", "store.hpp")."""
    parts = rel.split("/")
    if len(parts) > 1:
        return parts[0]
    return TOP_LEVEL_HEADERS.get(parts[0])


def files(root):
    for base, kind in (("src", "src"), (os.path.join("include", "phasemap"), "include")):
        top = os.path.join(root, base)
        for d, _, names in os.walk(top):
            for n in sorted(names):
                if not n.endswith((".cpp", ".hpp", ".h", ".cc")):
                    continue
                path = os.path.join(d, n)
                rel = os.path.relpath(path, top).replace(os.sep, "/")
                if kind == "src":
                    mod = rel.split("/")[0] if "/" in rel else None
                else:
                    mod = module_of_header(rel)
                yield os.path.relpath(path, root), mod, rel


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    problems, checked, unknown = [], 0, []
    for path, mod, rel in files(root):
        if mod is None:
            unknown.append(f"{path}: no module (a file outside src/<module>/, or a top-level header missing from TOP_LEVEL_HEADERS)")
            continue
        if mod not in ALLOWED:
            unknown.append(f"{path}: module '{mod}' is not in the layering table")
            continue
        mods, ext = closure(mod)
        checked += 1
        if mods is None:
            continue
        with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
            for ln, line in enumerate(f, 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                target = m.group(2)
                if target.startswith("phasemap/"):
                    other = module_of_header(target[len("phasemap/"):])
                    if other is None:
                        problems.append(f"{path}:{ln}: includes {target}, a header the check cannot place in a module")
                        continue
                    if other == mod or other in mods or excepted(mod, other, path.replace(os.sep, "/")):
                        continue
                    problems.append(f"{path}:{ln}: {mod} may not include {target} ({mod} → {other})")
                    continue
                base = target.split("/")[-1]
                for rx, api in EXTERNAL:
                    if rx.match(base) and api not in ext:
                        problems.append(f"{path}:{ln}: {mod} may not include {target} ({mod} → {EXTERNAL_NAMES[api]})")
    for p in unknown + problems:
        print(p)
    if unknown or problems:
        print(f"layering: {len(problems) + len(unknown)} violation(s) of the module table (scripts/check_layering.py)")
        return 1
    print(f"layering: {checked} files checked, every include is an allowed edge"
          + "".join(f"; known exception {a} → {b}: {why}" for (a, b, _), why in EXCEPTIONS.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
