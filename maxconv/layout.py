"""How N-D arrays map onto the ops' rows: samples along one axis, the other axes broadcast."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RowShape:
    """How N-D inputs map onto the ops' rows: samples along `axis`, every
    other axis broadcast between in1 and in2 (a 1-D in2 is one kernel for
    all rows), rows flattened in C order."""

    axis: int
    lead: tuple[int, ...]
    signal_lead: tuple[int, ...]
    taps_lead: tuple[int, ...]
    length: int
    taps: int

    @classmethod
    def of(cls, signal: tuple[int, ...], kernel: tuple[int, ...], axis: int) -> RowShape:
        if not -len(signal) <= axis < len(signal):
            raise ValueError(f"axis {axis} is out of bounds for {len(signal)}-D in1")
        axis %= len(signal)
        signal_lead = signal[:axis] + signal[axis + 1 :]
        if len(kernel) == 1:
            taps_lead, taps = (1,) * len(signal_lead), kernel[0]
        else:
            taps_lead, taps = kernel[:axis] + kernel[axis + 1 :], kernel[axis]
        try:
            lead = np.broadcast_shapes(signal_lead, taps_lead)
        except ValueError:
            raise ValueError(
                f"in1 {signal} and in2 {kernel} do not broadcast along the axes other than "
                f"{axis}: each must be equal or 1"
            ) from None
        return cls(axis, lead, signal_lead, taps_lead, signal[axis], taps)

    @property
    def rows(self) -> int:
        return int(np.prod(self.lead, dtype=np.int64))

    def as_rows(
        self, array: np.ndarray, lead: tuple[int, ...], dtype: np.dtype, expand: bool = False
    ) -> np.ndarray:
        """`array` (other axes `lead`) as contiguous [rows, samples] of `dtype`:
        one row if all its other axes are 1 (the op broadcasts it) unless
        `expand`, else one per result row."""
        samples = np.moveaxis(array, self.axis, -1) if array.ndim > 1 else array
        if all(size == 1 for size in lead) and not expand:
            return np.ascontiguousarray(samples.reshape(1, -1), dtype=dtype)
        if lead != self.lead:
            samples = np.broadcast_to(samples, (*self.lead, samples.shape[-1]))
        return np.ascontiguousarray(samples.reshape(self.rows, -1), dtype=dtype)

    def result_shape(self, count: int) -> tuple[int, ...]:
        return (*self.lead[: self.axis], count, *self.lead[self.axis :])

    def row_view(self, array: np.ndarray) -> np.ndarray | None:
        """[rows, count] view of a result-shaped array, if its layout allows one."""
        moved = np.moveaxis(array, self.axis, -1)
        return moved.reshape(self.rows, -1) if moved.flags.c_contiguous else None

    def from_rows(self, rows: np.ndarray, count: int) -> np.ndarray:
        return np.moveaxis(rows.reshape(*self.lead, count), -1, self.axis)

    def centered_on_signal(self, result: np.ndarray) -> np.ndarray:
        """scipy's 'same' keeps in1's shape on every axis, broadcast ones too:
        the middle rows of a broadcast axis, as scipy's `_centered` takes them."""
        index = []
        for size, wanted in zip(self.lead, self.signal_lead, strict=True):
            first = (size - wanted) // 2
            index.append(slice(first, first + wanted))
        index.insert(self.axis, slice(None))
        return result[tuple(index)]
