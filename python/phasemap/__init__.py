"""phasemap: per-layer hidden states of GGUF models during generation, and phasemap's metrics.

The package binds phasemap's C++ library (the same code as the ``phasemap`` CLI): models load
through llama.cpp, generation runs in the capture engine with the GIL released, and every metric
is the library's. Nothing here re-computes what the library computes.

Example::

    >>> import phasemap
    >>> m = phasemap.Model("stories260K.gguf")
    >>> run = m.generate("Once upon a time", n=16)[0]
    >>> run.hidden_states.shape          # [T, L', d] float32
    (16, 6, 64)
    >>> summary = phasemap.analyze(run.hidden_states, layers=run.layers)
    >>> summary["token_axis"]["ratio_norm"]

Errors are ``FileNotFoundError`` (a missing model, manifest or DB), ``ValueError`` (a bad option:
layer spec, array rank, non-finite states, …) or ``RuntimeError``, with the CLI's messages.
Ctrl-C (``KeyboardInterrupt``) stops a generation between tokens and a panel between commits.
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from . import _phasemap
from . import metrics
from . import panel
from ._run import Run, Step
from .store import Store

__version__: str = _phasemap.version()
__all__ = ["Model", "Run", "Step", "Store", "analyze", "audit", "metrics", "panel", "report", "version_string", "__version__"]


def version_string() -> str:
    """``"phasemap X.Y.Z (llama.cpp <commit>)"``, as ``phasemap --version`` prints."""
    return _phasemap.version_string()


def _list(x: Union[str, Sequence[str], None]) -> List[str]:
    if x is None:
        return []
    if isinstance(x, str):
        return [x]
    return [str(v) for v in x]


class Model:
    """A GGUF model loaded through llama.cpp (every quantisation llama.cpp reads).

    ``Model(path, threads=0, gpu_layers=0, lora=[(adapter_path, scale), ...])``

    ``threads=0`` uses ``$PHASEMAP_THREADS`` or the physical cores. LoRA adapters are applied
    by every generation on this model.

    Example::

        >>> m = phasemap.Model("stories260K.gguf", threads=1)
        >>> m.info["n_layer"], m.info["n_embd"]
        (5, 64)
        >>> m.detokenize(m.tokenize("Hello", add_special=False))
        'Hello'
    """

    def __init__(self, path: str, threads: int = 0, gpu_layers: int = 0,
                 lora: Sequence[Tuple[str, float]] = ()) -> None:
        self._m = _phasemap.Model(str(path), int(threads), int(gpu_layers),
                                  [(str(p), float(s)) for p, s in lora])

    @property
    def info(self) -> Dict[str, Any]:
        """Facts about the model: path, sha256, architecture, n_layer, n_embd, n_vocab, …"""
        return self._m.info

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = False) -> List[int]:
        """Token ids of ``text`` (``add_special``: BOS as the model wants it)."""
        return self._m.tokenize(text, add_special, parse_special)

    def detokenize(self, ids: Sequence[int]) -> str:
        """The text of token ids (invalid UTF-8 replaced)."""
        return self._m.detokenize([int(i) for i in ids])

    def token_text(self, token_id: int) -> str:
        """The piece of one token as it appears in text."""
        return self._m.token_text(int(token_id))

    def apply_chat_template(self, message: str) -> str:
        """The model's chat template applied to one user message, generation prompt appended."""
        return self._m.apply_chat_template(message)

    def generate(self, prompts: Union[str, Sequence[str]], n: int = 64, layers: str = "hf:all",
                 temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
                 chat: bool = False, parallel: int = 1, precision: str = "exact",
                 save_logits: bool = False, ctx: int = 0,
                 interventions: Sequence[str] = (), intervention_files: Sequence[str] = (),
                 control_vectors: Sequence[str] = (),
                 hooks: Optional[Dict[str, Any]] = None, output_stats: str = "auto") -> List[Run]:
        """Generates every prompt and captures hidden states at every generated token.

        The options are ``phasemap generate``'s: ``n`` (``-n``), ``layers`` (``--layers``),
        ``temperature``/``top_k``/``top_p``/``seed``, ``chat``, ``parallel``, ``precision``
        (``exact`` or ``fast``), ``save_logits``, ``ctx``; ``interventions`` are ``--intervene``
        SPECs (e.g. ``"add:block:3:vec.npy:2.0@t=0-10"``), ``intervention_files`` TOML files,
        ``control_vectors`` ``FILE[:SCALE]``, ``output_stats`` (``--output-stats``: ``auto``,
        ``graph`` or ``host``). Returns one :class:`Run` per prompt, equal field by
        field to the NPZ ``phasemap generate -o`` writes for the same settings.

        ``hooks={"block:3": fn}`` calls ``fn(step, state)`` for every generated token with a
        writable float32 numpy view ``state`` ``[n_embd]`` of block 3's output at that token's
        emitting position, before block 4 reads it; edit it in place to intervene (the view is
        valid only during the call). A hook costs one Python call (with the GIL) per hooked
        state and token — with a small model that dominates the token time (see BENCHMARKS.md);
        the built-in ``interventions`` stay native and cost nothing comparable. An exception
        raised by a hook ends the generation and is raised here.

        The GIL is released while the engine runs; Ctrl-C stops the generation at the next
        token and raises ``KeyboardInterrupt`` (the sequences are freed).

        Example::

            >>> runs = m.generate(["Once upon a time", "The cat"], n=8, layers="hf:all")
            >>> runs[0].hidden_states.shape, runs[0].layers[:2]
            ((8, 6, 64), ['hf:0', 'hf:1'])
            >>> def push(step, state): state += 0.5
            >>> hooked = m.generate("Once", n=8, hooks={"block:2": push})
        """
        out = self._m._generate(_list(prompts), int(n), str(layers), float(temperature), int(top_k),
                                float(top_p), int(seed), bool(chat), int(parallel), str(precision),
                                bool(save_logits), int(ctx), _list(interventions),
                                _list(intervention_files), _list(control_vectors), dict(hooks or {}),
                                str(output_stats))
        return [Run(d) for d in out]

    def stream(self, prompt: str, n: int = 64, layers: str = "hf:all", temperature: float = 0.0,
               top_k: int = 0, top_p: float = 1.0, seed: int = 0, chat: bool = False,
               precision: str = "exact", ctx: int = 0, interventions: Sequence[str] = (),
               control_vectors: Sequence[str] = (), output_stats: str = "auto") -> "Stream":
        """Generates one prompt, yielding a :class:`Step` per generated token as it is produced.

        Each step holds the token id and text, the captured states ``[L', d]`` of that token,
        its probability stats, its output state and ``ct`` (ct_t so far at the last captured
        layer, NaN for t < 2). Breaking out of the loop (or ``close()``) stops the generation and
        frees the sequence; the same tokens and states as :meth:`generate` otherwise.

        Example::

            >>> for step in m.stream("Once upon a time", n=32):
            ...     print(step.t, repr(step.text), step.entropy)
            ...     if step.text == ".":
            ...         break
        """
        s = self._m._stream(str(prompt), int(n), str(layers), float(temperature), int(top_k), float(top_p),
                            int(seed), bool(chat), str(precision), int(ctx), _list(interventions),
                            _list(control_vectors), str(output_stats))
        return Stream(s)


class Stream:
    """Iterator of :class:`Step` records from :meth:`Model.stream` (a context manager too)."""

    def __init__(self, s: Any) -> None:
        self._s = s

    def __iter__(self) -> Iterator[Step]:
        return self

    def __next__(self) -> Step:
        return Step(next(self._s))

    def close(self) -> None:
        """Stops the generation (at the next token), joins the worker and frees the sequence."""
        self._s.close()

    @property
    def run(self) -> Optional[Run]:
        """The whole run once the stream is exhausted (None before, or after a break)."""
        d = self._s._run()
        return None if d is None else Run(d)

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._s.close()
        except Exception:
            pass


def analyze(hidden_states: Any, logits: Any = None, token_ids: Any = None, layers: Optional[Sequence[str]] = None,
            stats: Any = None, **options: Any) -> Dict[str, Any]:
    """The per-run metric summary of ``hidden_states`` ``[T, L, d]`` (float16/32/64), as a dict.

    It is the JSON ``phasemap analyze RUN.npz --json`` writes for an NPZ holding the same arrays
    (bitwise the same numbers). ``logits`` ``[T, V]`` with ``token_ids`` ``[T]`` give the
    probability stats (output states, baselines); ``stats=(entropy, top1, margin, surprisal)``
    gives stored ones instead (a :class:`Run`'s). ``layers`` names the layers (``"hf:0"`` first:
    the embedding output is left out unless ``include_embedding=True``, as in LIMEN's protocol).

    Options (the CLI's, ``-`` as ``_``): ``layer`` (``--metric-layer``: a label or an index),
    ``norm``, ``mad_k``, ``curvature``, ``ct_clip``, ``ct_clip_k``, ``late_window``,
    ``collapse_threshold``, ``regime_cuts`` (``"a,b,c"``), ``layer_axis``, ``collapse_top1``,
    ``rivalry_margin``, ``diffuse_entropy``, ``shuffles``, ``control_seed``,
    ``include_embedding``.

    Example::

        >>> import numpy as np
        >>> h = np.random.default_rng(0).standard_normal((32, 8, 16)).astype(np.float32)
        >>> s = phasemap.analyze(h, norm="clipped_mad")
        >>> s["token_axis"]["ratio_norm"]
    """
    import numpy as np

    if isinstance(hidden_states, Run):
        run = hidden_states
        ctx = {"prompt_text": run.prompt_text, "text": run.text, "tokens": run.tokens, "metadata": run.metadata}
        return _phasemap._analyze(run.hidden_states, run.logits, run.token_ids,
                                  (run.entropy, run.top1, run.margin, run.surprisal), run.layers, ctx, options)
    arr = np.asarray(hidden_states)
    return _phasemap._analyze(arr, logits, token_ids, stats, None if layers is None else list(layers), None, options)


def audit(db: str, sections: Optional[Sequence[str]] = None, metric: str = "ratio_norm", factor: str = "model",
          norm: str = "", bootstrap: int = 1000, reml_bootstrap: int = 200, permutations: int = 1000,
          seed: int = 20250101, robust_share: float = 0.95, hypotheses: str = "", store: bool = True) -> Dict[str, Any]:
    """The panel audits of a results DB (``phasemap audit DB``; docs/audit.md), as a dict.

    The same document ``phasemap audit DB --json FILE`` writes (``sections`` keyed by name:
    regime, normalisation, variance, topology, hypotheses, cycles, robustness, variants,
    controls). The options are the CLI's; ``store=False`` is ``--no-store`` (by default the
    results are written back into the DB, as the CLI does). The GIL is released while it runs.

    Example::

        >>> a = phasemap.audit("results.duckdb", sections=["regime", "variance"], bootstrap=200)
        >>> a["sections"]["regime"]
    """
    return _phasemap._audit(str(db), _list(sections), str(metric), str(factor), str(norm), int(bootstrap),
                            int(reml_bootstrap), int(permutations), int(seed), float(robust_share), str(hypotheses),
                            bool(store))


def report(db: Optional[str], path: str = "report.html", *, hypotheses: str = "", panel_json: str = "", audit_json: str = "",
           runs_json: Optional[Sequence[str]] = None, control_json: Optional[Sequence[str]] = None,
           monitor_json: Optional[Sequence[str]] = None, svg: str = "", png: str = "", title: str = "phasemap report",
           regime_cuts: str = "", max_series: int = 24, max_points: int = 400, bootstrap: int = 2000) -> Dict[str, Any]:
    """The HTML report of ``phasemap report`` (docs/report.md): writes the page to ``path``.

    ``db`` is the results DB (``phasemap panel run``; ``None`` to report from JSON files only).
    The keyword options are the CLI's flags: ``hypotheses`` (--hypotheses), ``panel_json``,
    ``audit_json``, ``runs_json`` / ``control_json`` / ``monitor_json`` (lists of files), ``svg`` /
    ``png`` (folders for each figure), ``title``, ``regime_cuts`` ("a,b,c" or "@FILE"),
    ``max_series``, ``max_points``, ``bootstrap``. The same library call as the CLI writes the same
    page (atomically). Returns ``{"path", "bytes", "figures"}`` (figure ids exported). The GIL is
    released while it runs.

    Example::

        >>> phasemap.report("results.duckdb", "report.html", title="panel A", bootstrap=500)
        {'path': 'report.html', 'bytes': 912345, 'figures': []}
    """
    return _phasemap._report("" if db is None else str(db), str(path), str(hypotheses), str(panel_json), str(audit_json),
                             _list(runs_json), _list(control_json), _list(monitor_json), str(svg), str(png),
                             str(regime_cuts), str(title), int(max_series), int(max_points), int(bootstrap))
