"""Panels: a manifest's grid of models × prompts × settings, run into a results DB.

``phasemap.panel.run(manifest, db)`` is ``phasemap panel run MANIFEST --db DB``: runs already in
the DB are skipped, each generation group is committed in one transaction, and Ctrl-C
(``KeyboardInterrupt``) stops between commits — running it again resumes.
"""
from __future__ import annotations

import sys
from typing import Any, Dict, Optional

from . import _phasemap


class _Progress:
    """tqdm when it is installed, otherwise the library's plain progress line on stderr."""

    def __init__(self) -> None:
        self._bar = None
        try:
            import tqdm  # type: ignore
            self._tqdm = tqdm
        except ImportError:
            self._tqdm = None

    def __call__(self, done: int, total: int, tokens: int, seconds: float, model: str, line: str) -> None:
        if self._tqdm is not None:
            if self._bar is None:
                self._bar = self._tqdm.tqdm(total=total, unit="run")
            self._bar.n = done
            self._bar.set_postfix(model=model, tokens=tokens)
            self._bar.refresh()
            if done == total:
                self._bar.close()
        else:
            sys.stderr.write(line if line.endswith("\n") else line + "\n")
            sys.stderr.flush()


def run(manifest: str, db: str, progress: bool = True, parallel: int = 1, threads: int = 0,
        shard: str = "1/1") -> Dict[str, Any]:
    """Runs the pending runs of ``manifest`` (TOML) into the results DB ``db``.

    Returns a dict: grid_runs, shard_runs, skipped, done, repaired, tokens, seconds.

    Example::

        >>> r = phasemap.panel.run("panel.toml", "results.duckdb")
        >>> r["done"], r["skipped"]
        >>> phasemap.Store("results.duckdb").runs().head()
    """
    cb: Optional[_Progress] = _Progress() if progress else None
    return _phasemap._panel_run(str(manifest), str(db), int(parallel), int(threads), str(shard), cb)
