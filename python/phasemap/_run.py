"""Run and Step: the records :meth:`phasemap.Model.generate` and :meth:`phasemap.Model.stream` give."""
from __future__ import annotations

from typing import Any, Dict, List, Optional


class Run:
    """One generated run, field by field the NPZ ``phasemap generate -o`` writes.

    Attributes:
        hidden_states: float32 ``[T, L', d]`` (a view of the engine's recording, no copy)
        layers: labels of the captured layers (``"hf:0"``, …, ``"block:3"``)
        token_ids, positions: int64 ``[T]``; prompt_ids: int64 ``[P]``
        entropy, top1, margin, surprisal: float64 ``[T]`` (nats / probabilities, METRICS.md §1)
        logits: float32 ``[T, V]`` with ``save_logits=True``, else None
        text: the generated text; tokens: the token texts; prompt_text: the text tokenised
        stop_reason: ``"eog"``, ``"length"`` or ``"interrupted"``
        metadata: the NPZ's metadata.json as a dict (model, engine, sampling, layers, …)

    Example::

        >>> run = m.generate("Once upon a time", n=8)[0]
        >>> run.hidden_states[:, run.layers.index("hf:3")].shape
        (8, 64)
    """

    __slots__ = ("hidden_states", "logits", "layers", "token_ids", "positions", "prompt_ids", "entropy", "top1",
                 "margin", "surprisal", "text", "tokens", "prompt_text", "stop_reason", "metadata")

    def __init__(self, d: Dict[str, Any]) -> None:
        for k in self.__slots__:
            setattr(self, k, d[k])

    def __len__(self) -> int:
        return len(self.token_ids)

    def __repr__(self) -> str:
        return (f"Run(T={len(self)}, layers={len(self.layers)}, d={self.hidden_states.shape[-1]}, "
                f"stop={self.stop_reason!r}, text={self.text[:40]!r})")

    def analyze(self, **options: Any) -> Dict[str, Any]:
        """``phasemap.analyze`` of this run (its states, layer names and probability stats)."""
        from . import analyze
        return analyze(self, **options)


class Step:
    """One generated token of a stream.

    Attributes: ``t``, ``token_id``, ``text``, ``position``, ``entropy``, ``top1``, ``margin``,
    ``surprisal``, ``states`` (float32 ``[L', d]``), ``output_state`` (COLLAPSE / RIVALRY /
    DIFFUSE / OPEN), ``ct`` (ct_t at the last captured layer so far; NaN for t < 2).
    """

    __slots__ = ("t", "token_id", "text", "position", "entropy", "top1", "margin", "surprisal", "states",
                 "output_state", "ct")

    def __init__(self, d: Dict[str, Any]) -> None:
        for k in self.__slots__:
            setattr(self, k, d[k])

    def __repr__(self) -> str:
        return f"Step(t={self.t}, text={self.text!r}, entropy={self.entropy:.4f}, state={self.output_state})"
