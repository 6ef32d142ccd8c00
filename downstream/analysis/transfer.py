"""Does an interpretability measure predict transfer? Rank correlations across backbones.

Spearman's ρ (scipy.stats.spearmanr) between a measure and a downstream score over the backbones that have
both (NaN values dropped pair-wise), with its two-sided p-value and the number of backbones. With a few
dozen backbones from a handful of families, ρ mostly says whether the families are ordered alike; the
caller reports ``n`` next to every ρ.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["spearman", "spearman_table"]


def spearman(a: Mapping[str, float], b: Mapping[str, float], *, min_n: int = 4) -> dict[str, float]:
    """``{"rho", "p", "n"}`` over the keys of ``a`` and ``b`` where both are finite; rho and p are NaN
    with fewer than ``min_n`` pairs or when either side is constant on them."""
    from scipy.stats import spearmanr

    keys = [k for k in a if k in b and math.isfinite(a[k]) and math.isfinite(b[k])]
    n = len(keys)
    xs, ys = [a[k] for k in keys], [b[k] for k in keys]
    if n < min_n or len(set(xs)) < 2 or len(set(ys)) < 2:
        return {"rho": float("nan"), "p": float("nan"), "n": float(n)}
    res = spearmanr(xs, ys)
    return {"rho": float(res.statistic), "p": float(res.pvalue), "n": float(n)}


def spearman_table(
    measures: Mapping[str, Mapping[str, float]], targets: Mapping[str, Mapping[str, float]], *, min_n: int = 4
) -> dict[str, dict[str, dict[str, float]]]:
    """``{measure: {target: spearman(...)}}`` for every measure (``{backbone: value}``) and target."""
    return {m: {t: spearman(mv, tv, min_n=min_n) for t, tv in targets.items()} for m, mv in measures.items()}
