"""One row <-> a Ray Data batch of one row (stages run with batch_size=1: an episode is big)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["batch_to_row", "row_to_batch", "rows_to_batch"]


def _scalar(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def batch_to_row(batch: dict[str, Any], i: int = 0) -> dict[str, Any]:
    return {k: _scalar(v[i]) for k, v in batch.items()}


def rows_to_batch(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows (possibly with different keys) -> columns; arrays of one shape are stacked."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    out: dict[str, Any] = {}
    for k in keys:
        values = [r.get(k) for r in rows]
        if all(isinstance(v, np.ndarray) for v in values) and len({v.shape for v in values}) == 1:
            out[k] = np.stack(values)
        else:
            out[k] = values
    return out


def row_to_batch(row: dict[str, Any]) -> dict[str, Any]:
    return rows_to_batch([row])
