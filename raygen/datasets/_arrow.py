"""numpy <-> Arrow for per-frame columns: vectors are fixed-size lists, scalars are plain columns."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = ["column_values", "to_arrow"]


def to_arrow(values: np.ndarray, typ: pa.DataType) -> pa.Array:
    """[n, D] values as a fixed_size_list<D> array, or [n] values as a plain array of ``typ``."""
    if pa.types.is_fixed_size_list(typ):
        flat = np.ascontiguousarray(values).reshape(-1)
        return pa.FixedSizeListArray.from_arrays(pa.array(flat, type=typ.value_type), typ.list_size)
    return pa.array(np.asarray(values).reshape(-1), type=typ)


def column_values(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A column as [n, D] (fixed-size lists) or [n] (scalars) numpy values."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_fixed_size_list(arr.type):
        return arr.flatten().to_numpy(zero_copy_only=False).reshape(len(arr), arr.type.list_size)
    return arr.to_numpy(zero_copy_only=False)
