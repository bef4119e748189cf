"""Statistics over seeds, numpy/scipy only (so the report stage can use them without JAX)."""

from __future__ import annotations

import math

import numpy as np
import scipy.stats

__all__ = ["ci95"]


def ci95(values: np.ndarray) -> float:
    """Half-width of the 95 % confidence interval of the mean (Student t, n-1 dof); NaN for n < 2."""
    values = np.asarray(values, np.float64)
    n = values.size
    if n < 2:
        return math.nan
    return float(scipy.stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n))
