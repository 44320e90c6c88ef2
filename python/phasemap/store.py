"""Read a results DB (DuckDB) as pandas DataFrames, built from DuckDB's result columns.

The columns come from the C++ store (src/store, the only DuckDB code) as typed arrays with the
DB's types: BIGINT → int64 (Int64 when it holds NULLs), DOUBLE → float64, FLOAT → float32,
BOOLEAN → bool (boolean with NULLs), UBIGINT → uint64, VARCHAR and the rest → object (str, None
for NULL). No pyarrow is needed.
"""
from __future__ import annotations

from typing import Any, Dict

from . import _phasemap


def _frame(cols: Dict[str, Dict[str, Any]]):
    import numpy as np
    import pandas as pd

    data = {}
    for name, c in cols.items():
        v, valid = c["values"], c["valid"]
        if isinstance(v, list):
            data[name] = pd.Series(v, dtype=object)
        elif valid.all() or v.dtype.kind == "f":
            data[name] = pd.Series(v)
        elif v.dtype.kind == "b":
            data[name] = pd.Series(pd.arrays.BooleanArray(v, ~valid))
        else:
            data[name] = pd.Series(pd.arrays.IntegerArray(v, ~valid))
    return pd.DataFrame(data, columns=list(cols.keys()))


class Store:
    """A results DB, opened read-only.

    Example::

        >>> st = phasemap.Store("results.duckdb")
        >>> st.runs()[["model", "category", "ratio_norm", "regime"]].head()
        >>> st.tokens().groupby("run_id").ct_t.mean()
        >>> st.query("SELECT model, avg(ratio_norm) AS r FROM runs GROUP BY model")
    """

    def __init__(self, db: str) -> None:
        self._s = _phasemap._Store(str(db))

    def table(self, name: str, order_by: str = ""):
        """Every row of one table as a DataFrame (``order_by``: an SQL ORDER BY list)."""
        return _frame(self._s.table(name, order_by))

    def query(self, sql: str):
        """The rows of a read-only SQL query as a DataFrame."""
        return _frame(self._s.query(sql))

    def runs(self):
        """The runs table (one row per analysed run, every metric column)."""
        return self.table("runs", "run_id")

    def tokens(self):
        """The tokens table (one row per generated token of every run)."""
        return self.table("tokens", "run_id, t")

    def token_layers(self):
        """The token_layers table (token-axis series of every captured layer)."""
        return self.table("token_layers", "run_id, t, layer")

    def models(self):
        """The models table."""
        return self.table("models", "label")

    def audits(self):
        """The audits table (stored audit / control-audit / monitor-eval documents)."""
        return self.table("audits", "kind, name")

    def meta(self) -> Dict[str, str]:
        """The meta table (schema_version, manifest_hash, …) as a dict."""
        return dict(self._s.meta())
