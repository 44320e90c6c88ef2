"""panel.run and Store DataFrames, checked against the DB read independently (DuckDB's C API
through ctypes, not phasemap's store code)."""
import ctypes
import os

import numpy as np
import pandas as pd
import pytest

import phasemap
from conftest import cli

DUCKDB_LIB = os.environ.get("PHASEMAP_DUCKDB_LIB", "")


class DuckDB:
    """The few DuckDB C API calls the check needs."""

    # duckdb_type values (duckdb.h)
    TYPES = {1: "BOOLEAN", 2: "TINYINT", 3: "SMALLINT", 4: "INTEGER", 5: "BIGINT", 6: "UTINYINT", 7: "USMALLINT",
             8: "UINTEGER", 9: "UBIGINT", 10: "FLOAT", 11: "DOUBLE", 17: "VARCHAR"}

    def __init__(self, lib, path):
        self.l = ctypes.CDLL(lib)
        self.db, self.con = ctypes.c_void_p(), ctypes.c_void_p()
        cfg = ctypes.c_void_p()
        assert self.l.duckdb_create_config(ctypes.byref(cfg)) == 0
        self.l.duckdb_set_config(cfg, b"access_mode", b"READ_ONLY")
        err = ctypes.c_char_p()
        assert self.l.duckdb_open_ext(str(path).encode(), ctypes.byref(self.db), cfg, ctypes.byref(err)) == 0
        self.l.duckdb_destroy_config(ctypes.byref(cfg))
        assert self.l.duckdb_connect(self.db, ctypes.byref(self.con)) == 0

    def columns(self, sql):
        res = (ctypes.c_char * 128)()  # duckdb_result (opaque here, 48 bytes)
        assert self.l.duckdb_query(self.con, sql.encode(), res) == 0
        self.l.duckdb_row_count.restype = ctypes.c_uint64
        self.l.duckdb_column_name.restype = ctypes.c_char_p
        rows = self.l.duckdb_row_count(res)
        n = self.l.duckdb_column_count(res)
        cols = [(self.l.duckdb_column_name(res, ctypes.c_uint64(i)).decode(),
                 self.TYPES.get(self.l.duckdb_column_type(res, ctypes.c_uint64(i)), "OTHER")) for i in range(n)]
        self.l.duckdb_destroy_result(res)
        return rows, cols

    def close(self):
        self.l.duckdb_disconnect(ctypes.byref(self.con))
        self.l.duckdb_close(ctypes.byref(self.db))


DTYPE = {"BOOLEAN": "bool", "TINYINT": "int64", "SMALLINT": "int64", "INTEGER": "int64", "BIGINT": "int64",
         "UTINYINT": "uint64", "USMALLINT": "uint64", "UINTEGER": "uint64", "UBIGINT": "uint64", "FLOAT": "float32",
         "DOUBLE": "float64", "VARCHAR": "object", "OTHER": "object"}
NULLABLE = {"bool": "boolean", "int64": "Int64", "uint64": "UInt64"}


@pytest.fixture(scope="module")
def panel_db(model_path, tmp_path_factory):
    d = tmp_path_factory.mktemp("panel")
    manifest = d / "panel.toml"
    manifest.write_text(f"""name = "py-test"
[generation]
temperatures = [0.0, 0.8]
n_predict = [6]
seeds = [1]
[metrics]
norms = ["raw", "clipped_mad"]
[[models]]
label = "stories"
path = "{model_path}"
[[prompts]]
builtin = "stories"
categories = ["animals"]
limit = 2
""")
    db = d / "panel.duckdb"
    lines = []
    r = phasemap.panel.run(str(manifest), str(db), progress=True)
    assert r["done"] == 8 and r["skipped"] == 0
    again = phasemap.panel.run(str(manifest), str(db), progress=False)  # resumes: nothing left to do
    assert again["done"] == 0 and again["skipped"] == 8
    return manifest, db


@pytest.mark.skipif(not DUCKDB_LIB, reason="PHASEMAP_DUCKDB_LIB not set")
def test_store_frames_have_the_db_rows_and_types(panel_db):
    _, db = panel_db
    st = phasemap.Store(str(db))
    frames = {"runs": st.runs(), "tokens": st.tokens(), "token_layers": st.token_layers(), "models": st.models()}
    duck = DuckDB(DUCKDB_LIB, db)
    try:
        for table, df in frames.items():
            rows, cols = duck.columns(f"SELECT * FROM {table}")
            assert len(df) == rows > 0, table
            assert list(df.columns) == [c for c, _ in cols], table
            for name, typ in cols:
                want = DTYPE[typ]
                got = str(df[name].dtype)
                assert got in (want, NULLABLE.get(want)), (table, name, typ, got)
                nulls = duck.columns(f'SELECT * FROM {table} WHERE "{name}" IS NULL')[0]
                if want in NULLABLE:
                    assert int(df[name].isna().sum()) == nulls, (table, name)
    finally:
        duck.close()
    runs = frames["runs"]
    assert set(runs["norm"]) == {"raw", "clipped_mad"}
    assert runs["ratio_norm"].dtype == np.float64
    assert (st.query("SELECT count(*) AS n FROM runs")["n"] == len(runs)).all()


def test_store_bad_inputs(tmp_path, panel_db):
    with pytest.raises(FileNotFoundError):
        phasemap.Store(str(tmp_path / "missing.duckdb"))
    _, db = panel_db
    with pytest.raises(RuntimeError, match="no table 'nope'"):
        phasemap.Store(str(db)).table("nope")
    with pytest.raises(FileNotFoundError):
        phasemap.panel.run(str(tmp_path / "missing.toml"), str(tmp_path / "x.duckdb"))
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 1\n")
    rc, _, err = cli("panel", "run", bad, "--db", tmp_path / "y.duckdb", check=False)
    assert rc != 0
    with pytest.raises(ValueError) as e:
        phasemap.panel.run(str(bad), str(tmp_path / "y.duckdb"))
    assert str(e.value).splitlines()[0] in err


def test_keyboard_interrupt_stops_a_panel_that_resumes(model_path, tmp_path):
    import _thread
    from phasemap import _phasemap

    manifest = tmp_path / "p.toml"
    manifest.write_text(f"""name = "py-interrupt"
[generation]
temperatures = [0.0]
n_predict = [4]
seeds = [1, 2, 3, 4]
[[models]]
label = "stories"
path = "{model_path}"
[[prompts]]
builtin = "stories"
categories = ["animals"]
limit = 1
""")
    db = tmp_path / "p.duckdb"
    seen = []

    def progress(done, total, tokens, seconds, model, line):
        seen.append(done)
        if len(seen) == 1:
            _thread.interrupt_main()  # Ctrl-C after the first committed generation

    with pytest.raises(KeyboardInterrupt):
        _phasemap._panel_run(str(manifest), str(db), 1, 0, "1/1", progress)
    stored = phasemap.Store(str(db)).query("SELECT count(*) AS n FROM runs")["n"][0]
    assert 1 <= stored < 4  # what was committed stays
    r = phasemap.panel.run(str(manifest), str(db), progress=False)
    assert r["skipped"] == stored and r["done"] == 4 - stored  # resumes as from the CLI


def test_audit_equals_cli(panel_db, tmp_path):
    import json
    _, db = panel_db
    out = tmp_path / "audit.json"
    opts = ["--bootstrap", "50", "--permutations", "50", "--reml-bootstrap", "20"]
    cli("audit", db, "--section", "regime", "--section", "normalisation", *opts, "--json", out, "--no-store", "-q")
    want = json.loads(out.read_text())
    got = phasemap.audit(str(db), sections=["regime", "normalisation"], bootstrap=50, permutations=50, reml_bootstrap=20,
                         store=False)
    assert got == want
    with pytest.raises(ValueError, match="factor"):
        phasemap.audit(str(db), factor="colour", store=False)


def _masked(path):
    """The page with its timestamps (the report's generation time) replaced."""
    import re
    return re.sub(r"\d{4}-\d\d-\d\d[T ][0-9:.]+Z?", "TS", path.read_text(encoding="utf-8"))


def test_report_equals_cli(panel_db, tmp_path):
    _, db = panel_db
    cuts = tmp_path / "cuts.txt"
    cuts.write_text("1.5,2.5,3.5\n")
    opts = ["--bootstrap", "50", "--title", "py report", "--max-series", "3", "--max-points", "20", "--regime-cuts", f"@{cuts}"]
    cli("report", db, "-o", tmp_path / "cli.html", *opts, "-q")
    r = phasemap.report(str(db), str(tmp_path / "py.html"), bootstrap=50, title="py report", max_series=3, max_points=20,
                        regime_cuts=f"@{cuts}")
    assert r["path"] == str(tmp_path / "py.html") and r["bytes"] == (tmp_path / "py.html").stat().st_size
    assert r["figures"] == []
    want, got = _masked(tmp_path / "cli.html"), _masked(tmp_path / "py.html")
    assert "py report" in want and len(want) > 10000
    assert got == want


def test_report_bad_inputs_raise_the_cli_messages(panel_db, tmp_path):
    _, db = panel_db
    for bad in [str(tmp_path / "no-such-folder" / "r.html"), str(tmp_path), str(db)]:
        rc, _, err = cli("report", db, "-o", bad, check=False)
        assert rc == 1 and err.startswith("phasemap: error: ")
        with pytest.raises(RuntimeError) as e:
            phasemap.report(str(db), bad)
        assert str(e.value) == err.strip().removeprefix("phasemap: error: ")
    rc, _, err = cli("report", db, "-o", tmp_path / "x.html", "--max-points", "1", check=False)
    with pytest.raises(ValueError) as e:
        phasemap.report(str(db), str(tmp_path / "x.html"), max_points=1)
    assert rc == 1 and str(e.value) == err.strip().removeprefix("phasemap: error: ")
    with pytest.raises(ValueError, match="nothing to report"):
        phasemap.report(None, str(tmp_path / "x.html"))
    with pytest.raises(FileNotFoundError, match="results DB"):
        phasemap.report(str(tmp_path / "missing.duckdb"), str(tmp_path / "x.html"))
    assert not (tmp_path / "x.html").exists()
