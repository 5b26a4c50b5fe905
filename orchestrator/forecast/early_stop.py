"""Which running trials cannot change the fit's answer (the rule behind `sweep.early_stop`; not wired yet).

The fit's answer at a budget is where its IsoFLOP profile has its minimum (orchestrator/fitting/isoflop.py:
a parabola in ln N whose vertex must be bracketed by at least `BRACKET` sampled sizes on each side). A
running trial can be stopped only when both hold:

- it cannot be the minimum: the low end of its forecast's 90% interval (Tissue et al. 2024's law,
  orchestrator/forecast/law.py) lies above the high end of the budget's best trial (the lowest of the
  finished trials' measured final losses and the running ones' interval highs), so with the interval's
  confidence its final loss is not the profile's lowest;
- it is not needed to bracket a minimum: it is not among the `BRACKET` sizes nearest, on either side, to any
  trial that can still be the minimum (every trial whose interval low, or measured loss, is at or below the
  best's high).

A trial without a forecast yet, a finished trial and any trial of a budget with fewer than 2 * BRACKET + 1
sizes is never stopped (the profile needs all of them to be fitted at all). This is Domhan et al. 2015's
rule ("Speeding up Automatic Hyperparameter Optimization of Deep Neural Networks by Extrapolation of
Learning Curves", IJCAI: stop a run whose extrapolated final value is unlikely to beat the best so far),
restricted by the scaling fit's own needs: a point far off the minimum still shapes the parabola's curvature
a little, so "cannot change the answer" means "cannot be the minimum, nor one of the sizes that bracket it",
the check the fit itself makes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

BRACKET = 2
"""Sampled sizes the fit wants on each side of a profile's vertex (orchestrator/fitting/isoflop.py's edge check)."""


@dataclass(frozen=True)
class Point:
    """One trial of a sweep as the driver sees it: finished (`loss` measured) or running (`lo`, `hi` from its
    forecast; None: no forecast yet)."""

    name: str
    budget: float
    n_params: float
    loss: float | None = None
    lo: float | None = None
    hi: float | None = None

    @property
    def running(self) -> bool:
        return self.loss is None

    @property
    def low(self) -> float:
        """The lowest final loss it can still have (its interval's low end; its loss when finished)."""
        if self.loss is not None:
            return self.loss
        return -math.inf if self.lo is None else self.lo

    @property
    def high(self) -> float:
        if self.loss is not None:
            return self.loss
        return math.inf if self.hi is None else self.hi


@dataclass(frozen=True)
class Stop:
    """A running trial that may be stopped, and why (the sentence the report lists)."""

    name: str
    budget: float
    reason: str


def stoppable(points: list[Point], *, bracket: int = BRACKET) -> list[Stop]:
    """The running trials that cannot change any budget's minimum or its bracket (see the module docstring)."""
    by_budget: dict[float, list[Point]] = defaultdict(list)
    for p in points:
        by_budget[p.budget].append(p)
    out = []
    for budget, profile in sorted(by_budget.items()):
        profile = sorted(profile, key=lambda p: p.n_params)
        if len(profile) < 2 * bracket + 1:
            continue
        best = min(profile, key=lambda p: p.high)
        ceiling = best.high
        if not math.isfinite(ceiling):
            continue
        candidates = [i for i, p in enumerate(profile) if p.low <= ceiling]
        keep: set[int] = set()
        for i in candidates:
            keep.update(range(max(i - bracket, 0), min(i + bracket, len(profile) - 1) + 1))
        for i, p in enumerate(profile):
            if not p.running or p.lo is None or i in keep:
                continue
            than = (f"{best.name}'s measured {best.loss:.4f}" if best.loss is not None
                    else f"{best.name}'s forecast of at most {best.high:.4f}")
            out.append(Stop(name=p.name, budget=budget, reason=(
                f"at budget {budget:.3g} its forecast final loss is at least {p.lo:.4f} (90% interval), above "
                f"{than}, and it is not one of the {bracket} sizes on either side of a possible minimum")))
    return out
