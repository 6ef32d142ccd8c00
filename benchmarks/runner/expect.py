"""Expected results (detectron2's ``verify_results`` idea): claims a suite makes about its leaderboard.

Two forms, both on seed means:

- absolute ``[variant, group.metric, value, tolerance]``: passes when ``|mean − value| ≤ tolerance``;
- comparative ``[variant, group.metric, op, target(, margin)]`` with ``op`` in ``> >= < <=`` and ``target``
  a number or another variant (its mean): ``>`` passes when ``mean > target + margin``, ``<`` when
  ``mean < target − margin``. Comparisons survive a faster or slower CPU; absolute values may not.

A missing value (the job failed or never ran) is a miss.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

from .leaderboard import Leaderboard
from .suite import Expectation

__all__ = ["CheckResult", "check_expectations"]

_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


@dataclass(frozen=True)
class CheckResult:
    expectation: Expectation
    ok: bool
    message: str


def check_expectations(lb: Leaderboard, expectations: list[Expectation]) -> list[CheckResult]:
    """Evaluate every expectation against ``lb``; the message states the numbers compared."""
    results = []
    for e in expectations:
        actual = lb.value(e.variant, e.metric)
        if math.isnan(actual):
            results.append(CheckResult(e, False, f"{e.describe()}: no value for {e.variant} {e.metric}"))
            continue
        if e.op == "≈":
            assert isinstance(e.target, float)
            ok = abs(actual - e.target) <= e.tolerance_or_margin
            results.append(CheckResult(e, ok, f"{e.describe()}: got {actual:.4f}"))
            continue
        if isinstance(e.target, str):
            target = lb.value(e.target, e.metric)
            what = f"{e.target} = {target:.4f}"
            if math.isnan(target):
                results.append(CheckResult(e, False, f"{e.describe()}: no value for {e.target} {e.metric}"))
                continue
        else:
            target, what = e.target, f"{e.target}"
        bound = target + e.tolerance_or_margin if e.op.startswith(">") else target - e.tolerance_or_margin
        ok = bool(_OPS[e.op](actual, bound))
        results.append(CheckResult(e, ok, f"{e.describe()}: got {actual:.4f} vs {what}"))
    return results
