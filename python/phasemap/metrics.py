"""The metric registry of phasemap (METRICS.md), one function per metric.

``phasemap.metrics.registry()`` lists every metric (name, unit, axis, shape, spec section,
description, options). Each per-token or per-run metric is also a function of an array::

    >>> import numpy as np, phasemap
    >>> h = np.random.default_rng(0).standard_normal((32, 4, 16)).astype(np.float32)
    >>> phasemap.metrics.ct_t(h)[:3]          # per token (NaN for t < 2)
    >>> phasemap.metrics.ratio_norm(h)        # per run (None when undefined)

Each function runs the library's analysis of the array (the same as :func:`phasemap.analyze`,
with the same options) and reads that metric through the registry's accessor. Table-shaped
metrics are read from :func:`phasemap.analyze`'s result.
"""
from __future__ import annotations

from typing import Any, Dict, List

from . import _phasemap

_REGISTRY: List[Dict[str, Any]] = _phasemap._metric_registry()


def registry() -> List[Dict[str, Any]]:
    """Every metric of the registry, in its order (token, layer, output, run, routing)."""
    return [dict(m) for m in _REGISTRY]


def metric(name: str, hidden_states: Any, logits: Any = None, token_ids: Any = None, layers: Any = None,
           **options: Any) -> Any:
    """The registry metric ``name`` of ``hidden_states`` ``[T, L, d]``: a float64 array per token,
    a list of labels per token, a float (None when undefined) or a label per run."""
    import numpy as np
    return _phasemap._metric(name, np.asarray(hidden_states), logits, token_ids,
                             None if layers is None else list(layers), options)


def _make(info: Dict[str, Any]):
    name = info["name"]

    def f(hidden_states: Any, logits: Any = None, token_ids: Any = None, layers: Any = None, **options: Any) -> Any:
        return metric(name, hidden_states, logits, token_ids, layers, **options)

    f.__name__ = name
    f.__qualname__ = name
    f.__doc__ = (f"{info['description']}\n\n{info['axis']} axis, {info['shape']}, unit {info['unit']} "
                 f"(METRICS.md {info['spec']}); options read: {', '.join(info['options']) or 'none'}.\n\n"
                 f"Example::\n\n    >>> phasemap.metrics.{name}(hidden_states)\n")
    return f


__all__ = ["registry", "metric"]
for _info in _REGISTRY:
    if _info["shape"] != "table" and _info["name"].isidentifier():
        globals()[_info["name"]] = _make(_info)
        __all__.append(_info["name"])
# The spec's own names: ct is ct_t (the token-axis series).
if "ct_t" in globals():
    ct = globals()["ct_t"]
    __all__.append("ct")
