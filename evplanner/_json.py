"""One JSON cleaner for every file evplanner writes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["json_ready"]


def json_ready(value: Any) -> Any:
    """``value`` as plain JSON data: NumPy scalars and arrays to Python values,
    tuples to lists, dict keys to strings, non-finite floats to None (recursively).

    Examples
    --------
    >>> json_ready({"a": np.float64("nan"), 2: (np.int64(3), np.array([1.5]))})
    {'a': None, '2': [3, [1.5]]}
    """
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_ready(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
