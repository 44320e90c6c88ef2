"""Loads the Parquet files of `phasemap export` into pandas DataFrames and checks them.

Debian's python3-pandas has no Parquet engine (pyarrow / fastparquet are not packaged), so the
files are read with DuckDB's Parquet reader from the same libduckdb.so (through ctypes), and the
columns become a pandas DataFrame. Prints a JSON summary {table: {rows, columns, dtypes}}.
Usage: parquet_pandas.py LIBDUCKDB PARQUET_DIR
"""
import ctypes
import json
import sys

import pandas as pd

lib = ctypes.CDLL(sys.argv[1])
pq_dir = sys.argv[2]


class Result(ctypes.Structure):  # duckdb_result (duckdb.h)
    _fields_ = [("column_count", ctypes.c_uint64), ("row_count", ctypes.c_uint64), ("rows_changed", ctypes.c_uint64),
                ("columns", ctypes.c_void_p), ("error", ctypes.c_char_p), ("internal", ctypes.c_void_p)]


P = ctypes.POINTER(Result)
lib.duckdb_query.argtypes = [ctypes.c_void_p, ctypes.c_char_p, P]
lib.duckdb_column_name.restype = ctypes.c_char_p
lib.duckdb_column_name.argtypes = [P, ctypes.c_uint64]
lib.duckdb_column_type.argtypes = [P, ctypes.c_uint64]
lib.duckdb_value_varchar.restype = ctypes.c_void_p
lib.duckdb_value_double.restype = ctypes.c_double
lib.duckdb_value_int64.restype = ctypes.c_int64
lib.duckdb_value_uint64.restype = ctypes.c_uint64
lib.duckdb_value_boolean.restype = ctypes.c_bool
lib.duckdb_value_is_null.restype = ctypes.c_bool
lib.duckdb_row_count.restype = ctypes.c_uint64
lib.duckdb_row_count.argtypes = [P]
lib.duckdb_column_count.restype = ctypes.c_uint64
lib.duckdb_column_count.argtypes = [P]
lib.duckdb_result_error.restype = ctypes.c_char_p
lib.duckdb_result_error.argtypes = [P]
lib.duckdb_destroy_result.argtypes = [P]
lib.duckdb_free.argtypes = [ctypes.c_void_p]
for f in ("duckdb_value_varchar", "duckdb_value_double", "duckdb_value_int64", "duckdb_value_uint64",
          "duckdb_value_boolean", "duckdb_value_is_null"):
    getattr(lib, f).argtypes = [P, ctypes.c_uint64, ctypes.c_uint64]

db = ctypes.c_void_p()
con = ctypes.c_void_p()
assert lib.duckdb_open(None, ctypes.byref(db)) == 0
assert lib.duckdb_connect(db, ctypes.byref(con)) == 0

BOOLEAN, BIGINT, UBIGINT, DOUBLE = 1, 5, 9, 11


def read_parquet(path):
    res = Result()
    if lib.duckdb_query(con, f"SELECT * FROM read_parquet('{path}')".encode(), ctypes.byref(res)) != 0:
        raise SystemExit(f"cannot read {path}: {lib.duckdb_result_error(ctypes.byref(res)).decode()}")
    nc, nr = lib.duckdb_column_count(ctypes.byref(res)), lib.duckdb_row_count(ctypes.byref(res))
    cols = {}
    for c in range(nc):
        name = lib.duckdb_column_name(ctypes.byref(res), c).decode()
        typ = lib.duckdb_column_type(ctypes.byref(res), c)
        vals = []
        for r in range(nr):
            if lib.duckdb_value_is_null(ctypes.byref(res), c, r):
                vals.append(None)
            elif typ == DOUBLE:
                vals.append(lib.duckdb_value_double(ctypes.byref(res), c, r))
            elif typ == BIGINT:
                vals.append(lib.duckdb_value_int64(ctypes.byref(res), c, r))
            elif typ == UBIGINT:
                vals.append(lib.duckdb_value_uint64(ctypes.byref(res), c, r))
            elif typ == BOOLEAN:
                vals.append(lib.duckdb_value_boolean(ctypes.byref(res), c, r))
            else:
                p = lib.duckdb_value_varchar(ctypes.byref(res), c, r)
                vals.append(ctypes.string_at(p).decode())
                lib.duckdb_free(p)
        s = pd.Series(vals, dtype="float64" if typ == DOUBLE else None, name=name)
        if typ in (BIGINT, UBIGINT) and len(s) and s.notna().all():
            s = s.astype("int64" if typ == BIGINT else "uint64")
        cols[name] = s
    lib.duckdb_destroy_result(ctypes.byref(res))
    return pd.DataFrame(cols)


frames = {t: read_parquet(f"{pq_dir}/{t}.parquet") for t in ("meta", "models", "runs", "tokens")}
runs, tokens = frames["runs"], frames["tokens"]
# Every run's token rows are there, t = 0 … n_generated-1.
per_run = tokens.groupby("run_id")["t"].agg(["count", "min", "max"])
for _, r in runs.iterrows():
    n = int(r["n_generated"])
    got = per_run.loc[r["run_id"]] if r["run_id"] in per_run.index else None
    if n and (got is None or int(got["count"]) != n or int(got["min"]) != 0 or int(got["max"]) != n - 1):
        raise SystemExit(f"run {r['run_id']}: token rows do not match n_generated {n}")
assert set(tokens["run_id"]) <= set(runs["run_id"]), "token rows of unknown runs"
assert runs["ratio_norm"].dtype == "float64" and tokens["ct_t"].dtype == "float64"
ok = runs["ratio_norm"].dropna()
assert (ok >= 1.0).all(), "ratio_norm below 1"
print(json.dumps({t: {"rows": len(f), "columns": list(f.columns), "dtypes": {c: str(f[c].dtype) for c in f.columns}}
                  for t, f in frames.items()}))
