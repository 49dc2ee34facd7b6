"""A columnar queue of future happenings (payment retries, refunds, chargebacks) keyed by day."""

from __future__ import annotations

import numpy as np


class Queue:
    """Rows of named, typed numpy columns, one of them ``due_day``.

    ``pop_due`` takes one day's rows out, in the order they were pushed, so the simulation
    stays deterministic.
    """

    def __init__(self, **dtypes: type | np.dtype) -> None:
        if "due_day" not in dtypes:
            raise ValueError("a queue needs a due_day column")
        self._columns = {name: np.empty(0, dtype=dtype) for name, dtype in dtypes.items()}

    def push(self, **columns: np.ndarray) -> None:
        if set(columns) != set(self._columns):
            raise ValueError(f"queue columns {sorted(self._columns)} != {sorted(columns)}")
        for name, values in columns.items():
            current = self._columns[name]
            self._columns[name] = np.concatenate([current, np.asarray(values, dtype=current.dtype)])

    def pop_due(self, day: int) -> dict[str, np.ndarray]:
        """Remove and return the rows due on ``day``."""
        due = self._columns["due_day"] == day
        taken = {k: v[due] for k, v in self._columns.items()}
        self._columns = {k: v[~due] for k, v in self._columns.items()}
        return taken

    def __len__(self) -> int:
        return int(self._columns["due_day"].size)
