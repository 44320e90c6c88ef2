from typing import Any, Dict, List, Optional

import numpy as np
import numpy.typing as npt

class Run:
    hidden_states: npt.NDArray[np.float32]
    logits: Optional[npt.NDArray[np.float32]]
    layers: List[str]
    token_ids: npt.NDArray[np.int64]
    positions: npt.NDArray[np.int64]
    prompt_ids: npt.NDArray[np.int64]
    entropy: npt.NDArray[np.float64]
    top1: npt.NDArray[np.float64]
    margin: npt.NDArray[np.float64]
    surprisal: npt.NDArray[np.float64]
    text: str
    tokens: List[str]
    prompt_text: str
    stop_reason: str
    metadata: Dict[str, Any]
    def __init__(self, d: Dict[str, Any]) -> None: ...
    def __len__(self) -> int: ...
    def analyze(self, **options: Any) -> Dict[str, Any]: ...

class Step:
    t: int
    token_id: int
    text: str
    position: int
    entropy: float
    top1: float
    margin: float
    surprisal: float
    states: npt.NDArray[np.float32]
    output_state: Optional[str]
    ct: float
    def __init__(self, d: Dict[str, Any]) -> None: ...
