"""Everything the report says, assembled once so the HTML and Markdown pages say the same thing.

`Page` holds the fit, the tables derived from it (tables.py), the figures and the run's provenance;
`headline` turns it into the few sentences at the top: the answer, how sure it is, and how far it is
extrapolated. Plain text: the pages escape it for their own format.
"""

from __future__ import annotations


import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from orchestrator.fitting import methods as registry
from orchestrator.fitting.result import Check, CheckStatus, FitResult
from orchestrator.report.tables import bounds
from orchestrator.report.text import count, finite, interval, num, outside, outside_note, sci


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
    result: FitResult
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
        return next((r.level for r in self.result.methods.values() if r.level), None)

    def level_text(self) -> str:
        return f"{self.level:.0%} CI" if self.level else "no CI (fit.bootstrap=0)"


def headline(page: Page) -> list[str]:
    """The answer in sentences: first whether it can be trusted (fitting/checks.py, with the fixes when not), then
    the exponents and what they mean, the largest target budget's allocation and the shape to train, agreement
    between methods, and extrapolation."""
    r = page.result
    if page.primary is None:
        return ["No method produced a compute-optimal frontier from these runs; see the warnings below."]
    out = verdict(r)
    e = r.methods[page.primary]
    flagged: list[str] = []
    a_ci, b_ci = bounds(e, "a"), bounds(e, "b")
    flagged += [q for q, ci in (("a", a_ci), ("b", b_ci)) if outside(e.law(q), ci)]
    label = registry.label(page.primary)
    if finite(e.a) and finite(e.b):
        out.append(f"Headline method: {label}. Compute-optimal allocation N_opt \u221d C^{_exp(e.a)} "
                   f"{interval(a_ci, fmt=_exp)} and D_opt \u221d C^{_exp(e.b)} {interval(b_ci, fmt=_exp)} "
                   f"({page.level_text()}): {_reading(e.a, e.b, a_ci)}".replace("  ", " "))
    else:
        out.append(f"Headline method: {label}. It gives no finite allocation exponent over the swept budgets, so how "
                   "compute should be split between parameters and tokens is not measured.")
    preds = sorted(e.predictions.values(), key=lambda p: p["C"])
    top = preds[-1]
    key = next(k for k, p in e.predictions.items() if p is top)
    shape = top.get("shape")
    train = (f" As a model of the sweep's shape rule: {shape['n_layer']} layers x {shape['d_model']} wide "
             f"({shape['n_head']} heads, {count(shape['N_total'])} parameters) on {count(shape['D'])} tokens, "
             f"which costs {sci(shape['C_exact'])} FLOPs.") if shape else ""
    cis = {q: bounds(e, q, budget=key) for q in ("N_opt", "D_opt", "loss")}
    flagged += [q for q, ci in cis.items() if outside(top.get(q), ci)]
    if finite(top.get("N_opt")) and finite(top.get("D_opt")):
        loss = (f"; predicted loss {num(top['loss'])} {interval(cis['loss'])}" if finite(top.get("loss")) else
                "; no finite loss is predicted there")
        out.append(f"At the largest target budget, C = {sci(top['C'])} FLOPs: train N_opt = {count(top['N_opt'])} "
                   f"parameters {interval(cis['N_opt'], fmt=count)} on D_opt = {count(top['D_opt'])} "
                   f"tokens {interval(cis['D_opt'], fmt=count)} "
                   f"({num(top['tokens_per_param'], digits=3)} tokens per parameter){loss}.{train}".replace("  ", " "))
    else:
        out.append(f"At the largest target budget, C = {sci(top['C'])} FLOPs, the {page.primary} fit gives no finite "
                   "allocation.")
    note = outside_note(flagged)
    if note:
        out.append(note)
    spread = page.frontier[page.frontier["C"] == top["C"]]
    spread = spread[np.isfinite(pd.to_numeric(spread["N_opt"], errors="coerce"))]  # methods with no N_opt there
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


def verdict(result: FitResult) -> list[str]:
    """Whether the frontier has earned a confident statement: the checks' outcome in words, and the fixes."""
    checks = result.checks
    if not checks:
        return []
    failed = [c for c in checks if c.status is CheckStatus.FAIL]
    missing = [c for c in checks if c.status is CheckStatus.SKIPPED]
    if result.trustworthy:
        ran = [c.title for c in checks if c.status is CheckStatus.PASS]
        return [f"The frontier passes all {len(ran)} checks it could run ({'; '.join(ran)})"
                + (f"; not checked: {'; '.join(c.title for c in missing)}." if missing else ".")] + _warnings(checks)
    lines = [f"This frontier is not yet trustworthy: {len(failed)} of {len(checks)} checks failed"
             + (f" and {len(missing)} could not run ({'; '.join(c.title for c in missing)})" if missing else "")
             + ". The numbers below are what the runs show so far, not an answer."]
    lines += [f"Failed: {c.title}: {c.detail}." + (f" Fix: {c.fix}." if c.fix else "") for c in failed]
    return lines + _warnings(checks)


def _warnings(checks: tuple[Check, ...]) -> list[str]:
    """Checks that do not gate the verdict but qualify it (a target far past the swept budgets)."""
    return [f"Warning: {c.title}: {c.detail}." + (f" Fix: {c.fix}." if c.fix else "")
            for c in checks if c.status is CheckStatus.WARN]


def _exp(x: float) -> str:
    return num(x, digits=3)


def _reading(a: float, b: float, ci: tuple[float, float] | None) -> str:
    """What the exponents say about allocation, from the numbers: how much of each 10x of compute goes to
    parameters and to tokens, and whether the interval can tell which should grow faster (a = 0.5 means equal
    growth; an interval wider than 0.2 cannot tell)."""
    per_decade = f"each 10x of compute buys about {10 ** a:.2g}x parameters and {10 ** b:.2g}x tokens"
    if ci is None:
        return f"{per_decade} (no interval: fit.bootstrap=0, so how sure this is is unknown)."
    if ci[1] - ci[0] > 0.2:
        return (f"the runs cannot yet say how to split compute between parameters and tokens (a anywhere from "
                f"{ci[0]:.2f} to {ci[1]:.2f}); at the point estimate {per_decade}.")
    if ci[1] < 0.5:
        return f"tokens should grow faster than parameters: {per_decade}."
    if ci[0] > 0.5:
        return f"parameters should grow faster than tokens: {per_decade}."
    return f"parameters and tokens should grow about equally (a = 0.5 is inside the interval): {per_decade}."
