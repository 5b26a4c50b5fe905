"""Everything the report says, assembled once so the HTML and Markdown pages say the same thing.

`Page` holds the fit, the tables derived from it (tables.py), the figures and the run's provenance;
`headline` turns it into the few sentences at the top: the answer, how sure it is, and how far it is
extrapolated. Plain text: the pages escape it for their own format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from orchestrator.report.tables import METHOD_LABELS, bounds
from orchestrator.report.text import count, interval, num, sci


@dataclass(frozen=True)
class Figure:
    """A drawn figure (path) or one that could not be drawn (path None, `missing` says why)."""

    name: str
    title: str
    caption: str
    path: Path | None = None
    missing: str = ""


@dataclass(frozen=True)
class Page:
    """The report's content. `source` names what was fitted (a sweep or a CSV path); `sweep` describes the
    sweep's plan (None for a CSV); `cost` is tables.cost_summary (None without a sweep's runs table)."""

    name: str
    source: str
    result: dict
    frontier: pd.DataFrame
    exponents: list[dict]
    holdout: list[dict]
    exclusions: list[dict]
    warnings: list[str]
    cost: dict | None
    floors: dict[str, float]
    swept: tuple[float, float]
    primary: str | None
    figures: list[Figure]
    generated: str
    sweep: dict | None = None
    files: dict[str, str] = field(default_factory=dict)

    @property
    def level(self) -> float | None:
        """Confidence level of the intervals (None: the fit ran without bootstrap)."""
        levels = [(self.result[m].get("ci") or {}).get("level") for m in self.result["method_order"]
                  if isinstance(self.result.get(m), dict)]
        return next((lv for lv in levels if lv), None)

    def level_text(self) -> str:
        return f"{self.level:.0%} CI" if self.level else "no CI (fit.bootstrap=0)"


def headline(page: Page) -> list[str]:
    """The answer in sentences: exponents, the largest target budget's allocation, agreement, extrapolation."""
    r = page.result
    if page.primary is None:
        return ["No method produced a compute-optimal frontier from these runs; see the warnings below."]
    e = r[page.primary]
    out = [f"Headline method: {METHOD_LABELS.get(page.primary, page.primary)}. Compute-optimal allocation "
           f"N_opt \u221d C^{num(e['a'], digits=3)} {interval(bounds(e, 'a'), fmt=_exp)} and "
           f"D_opt \u221d C^{num(e['b'], digits=3)} {interval(bounds(e, 'b'), fmt=_exp)} "
           f"({page.level_text()}): {_reading(e['a'], bounds(e, 'a'))}".replace("  ", " ")]
    preds = sorted(e["predictions"].values(), key=lambda p: p["C"])
    top = preds[-1]
    key = next(k for k, p in e["predictions"].items() if p is top)
    out.append(f"At the largest target budget, C = {sci(top['C'])} FLOPs: train N_opt = {count(top['N_opt'])} "
               f"parameters {interval(bounds(e, 'N_opt', budget=key), fmt=count)} on D_opt = {count(top['D_opt'])} "
               f"tokens {interval(bounds(e, 'D_opt', budget=key), fmt=count)} "
               f"({num(top['tokens_per_param'], digits=3)} tokens per parameter); predicted loss "
               f"{num(top['loss'])} {interval(bounds(e, 'loss', budget=key))}.".replace("  ", " "))
    spread = page.frontier[page.frontier["C"] == top["C"]]
    if len(spread) > 1:
        lo, hi = spread.loc[spread["N_opt"].idxmin()], spread.loc[spread["N_opt"].idxmax()]
        out.append(f"The {len(spread)} frontier methods put N_opt at that budget between {count(lo['N_opt'])} "
                   f"({lo['method']}) and {count(hi['N_opt'])} ({hi['method']}), a factor of "
                   f"{hi['N_opt'] / lo['N_opt']:.2g}.")
    beyond = [p["C"] for p in preds if p["C"] > page.swept[1] * 1.01]
    span = f"{sci(page.swept[0])} to {sci(page.swept[1])}" if page.swept[0] < page.swept[1] else sci(page.swept[1])
    if beyond:
        out.append(f"The runs span budgets {span} FLOPs; {len(beyond)} of {len(preds)} target budgets lie beyond "
                   f"them, up to {math.log10(max(beyond) / page.swept[1]):.1f} decades: those rows extrapolate the "
                   "fitted law.")
    else:
        out.append(f"The runs span budgets {span} FLOPs; every target budget lies within them.")
    return out


def _exp(x: float) -> str:
    return num(x, digits=3)


def _reading(a: float, ci: tuple[float, float] | None) -> str:
    """What the exponent a says about allocation, in words (b = 1 - a under C = kND): equal growth when the
    interval holds 0.5 (or, without one, when a is within 0.05 of it)."""
    equal = ci[0] <= 0.5 <= ci[1] if ci is not None else abs(a - 0.5) <= 0.05
    if equal:
        return "parameters and tokens should grow about equally with compute."
    if a > 0.5:
        return "parameters should grow faster than tokens as compute grows."
    return "tokens should grow faster than parameters as compute grows."
